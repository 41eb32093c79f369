"""Results (floor 5): the paper's published numbers, our rows of its tables, findings, the notebooks'
computations and plots, the headless notebook runner and the notebooks' parameters.
"""
