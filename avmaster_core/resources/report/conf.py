# Sphinx configuration of `make report` (avmaster_core/website.py copies it beside the generated pages).
# Everything here keeps the site offline: no execution, no script or font from a CDN, no math renderer.
project = "AV-Master reproduction"
author = "avmaster"
extensions = ["myst_nb"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# Render what papermill produced; never run a cell.
nb_execution_mode = "off"
# Widgets (notebook 32) would load require.js and the widget manager from a CDN: show their text form instead.
nb_ipywidgets_js = {}
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None),
                              ("html", "application/vnd.jupyter.widget-state+json", None)]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header", "misc.highlighting_failure"]

html_theme = "sphinx_book_theme"
html_title = "AV-Master reproduction"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "navigation_with_keys": False,
}
html_static_path = ["_static"]
html_css_files = ["report.css"]
html_last_updated_fmt = None
html_show_sourcelink = True
html_copy_source = True
html_use_index = False  # the general index page is empty here (and its theme script logs an error)
# The theme's colour mode when the browser has none stored (an empty one logs a console error on first visit).
html_context = {"default_mode": "light"}
# A favicon of our own: without one a browser asks the server for /favicon.ico (a 404 in the console).
html_favicon = "_static/favicon.svg"
