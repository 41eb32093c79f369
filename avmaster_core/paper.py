"""The paper's published numbers, typed once, as tidy pandas tables.

Every number below is copied from Section IV of the paper (Tables I-XIII and the text around
Figs. 4-8); nothing is computed or guessed. `paper_table(name)` returns a fresh DataFrame:

    table1   dataset sizes                         index Dataset
    table2   MUSIC-AVQA test, per question type    index method, columns as scoring.score: ("Audio QA", "Count")...
    table3   MUSIC-AVQA-R test, head / tail        index method, columns as scoring.score: (.., .., "H" | "T")
    table4   MUSIC-AVQA-v2.0 bias / balance        index (Test, Training, method), columns A-QA V-QA AV-QA Avg
    table5   AVQA test                              index method
    table6   pretraining-based methods              index method
    table7   ablation: components                  index method
    table8   ablation: loss functions              index "#", boolean loss columns
    table9   ablation: template length             index Lengths
    table10  ablation: weight sharing              index "#", boolean A-S / B-S columns
    table11  feature extractors                    index (Visual Encoder, Audio Encoder, method)
    table12  ablation: preference enhancement      index method
    table13  ablation: enhancement (fusion) method index method
    fig4 .. fig8  the only figure values the text states as numbers (often none; see `paper_claims`)

`paper_caption(name)` gives the caption, `paper_claims(name)` the paper's own sentences about the
result in words (what a reproduction should show qualitatively when no numbers are given).

Notes on the source:
- Table II: "—" (not reported) becomes NaN. The overall Avg and the A/V/AV Avg columns are micro
  averages (correct / total) over the test questions; for AV-Master every Avg agrees with the
  per-type numbers weighted by the test counts within 0.01. Some rows copied from other papers do
  not: SHMamba's overall (74.12 vs 73.95 from its own per-type numbers), AVAF-Net's AV Avg, QAGL's V Avg.
- Table XI: the paper's text gives a row that the table layout lost, AV-Master with CLIP_L + CLAP
  (Avg 79.34; "switching from VGGish to CLAP boosts the average accuracy from 78.51% to 79.34%").
  Only its Avg is known; its A/V/AV-QA cells are NaN. PSOT (78.42) is the CLAP row, AV-Master
  78.51 the VGGish row, as the text says.
- Figs. 4, 6 and 7 give no numbers in the text: their tables are empty (right columns, no rows).
"""
from __future__ import annotations

from io import StringIO

import numpy as np
import pandas as pd

from . import experiments, scoring
from .records import MODALITIES

# --------------------------------------------------------------------------------------------
# Column layouts are scoring's, so paper and ours line up column for column: Table II columns are
# (modality label, type label) such as ("Audio QA", "Count") ... ("Overall", "Avg"); Table III adds "H"/"T".
AVG = "Avg"
TABLE2_COLUMNS = scoring.TABLE2_COLUMNS
TABLE3_COLUMNS = scoring.TABLE3_COLUMNS
TABLE5_COLUMN = scoring.TABLE5_COLUMNS[0]  # "Total Accuracy (%)"
TABLE6_ACC, TABLE6_PARAMS = "ACC", "Params (millions)"  # Table VI: MUSIC-AVQA accuracy (Table II's Avg), size
# The paper's short names for the per-modality averages used by Tables IV and VII-XIII.
SUMMARY_COLUMNS = scoring.TABLE4_COLUMNS  # ("A-QA", "V-QA", "AV-QA", "Avg")
# For a table in the Table II layout: which column is which summary column.
SUMMARY_FROM_TABLE2 = dict(zip(SUMMARY_COLUMNS, [(scoring.MODALITY_LABELS[m], AVG) for m in MODALITIES]
                               + [scoring.OVERALL]))
METHOD = "method"  # the index level naming the method (scoring.score's index name)
OURS = experiments.OURS  # the row name of the paper's own model in every table

# --------------------------------------------------------------------------------------------
# The tables as printed (tab-separated; "—" = not reported). Bold/underline marks are dropped.

_TABLE1 = """\
Dataset	# Videos	# Train QA	# Valid QA	# Test QA
AVQA	57015	40425	—	16910
MUSIC-AVQA	9288	31904	4568	9129
MUSIC-AVQA-R	9288	—	—	211572
MUSIC-AVQA-v2.0	10492	37408	5346	10819
"""

_TABLE2 = """\
MCAN	77.50	55.24	69.25	71.56	70.93	71.24	80.40	64.91	54.48	57.22	47.57	61.58	65.49
PSAC	75.64	66.06	72.09	68.64	69.79	69.22	77.59	63.42	55.02	61.17	59.47	63.52	66.54
HME	74.76	63.56	70.61	67.97	69.46	68.76	80.30	63.19	53.18	62.69	59.83	64.05	66.45
AVSD	72.41	61.90	68.52	67.39	74.19	70.83	81.61	63.89	58.79	61.52	61.41	65.49	67.44
HCRN	68.59	50.92	62.05	64.39	61.81	63.08	54.47	53.38	41.53	52.11	47.69	50.26	55.73
Pano-AVQA	74.36	64.56	70.73	69.39	75.65	72.56	81.21	64.91	59.33	64.22	63.23	66.64	68.93
ST-AVQA	78.18	67.05	74.06	71.56	76.38	74.00	81.81	70.80	64.51	66.01	63.23	69.54	71.52
LAVISH	82.09	65.56	75.97	78.98	81.43	80.22	81.71	75.51	66.13	63.77	67.96	71.26	74.46
QAGL	82.99	71.04	78.58	80.12	77.88	78.89	82.29	72.73	62.83	63.40	64.36	69.43	73.58
TSPM	84.07	64.65	76.91	82.29	84.90	83.61	82.19	76.21	71.85	65.76	71.17	73.51	76.79
APL	82.40	70.71	78.09	76.52	82.74	79.69	82.99	73.29	66.68	64.76	65.95	70.96	74.53
PSOT†	—	—	78.22	—	—	80.07	—	—	—	—	—	72.61	75.29
AVAF-Net	83.09	69.70	78.15	80.20	84.49	82.37	84.51	75.05	68.37	61.94	70.07	72.12	75.90
SHMamba	82.30	63.64	75.42	78.53	81.31	79.93	82.89	72.65	67.93	61.31	68.37	70.64	74.12
CoQo†	—	—	78.90	—	—	83.70	—	—	—	—	—	73.92	77.40
QA-TIGER	84.86	67.85	78.58	83.96	86.29	85.14	83.10	78.58	72.50	63.94	69.59	73.74	77.62
AV-Master	87.02	67.85	79.95	86.55	86.61	86.58	83.60	79.13	72.39	64.21	70.80	74.22	78.51
"""
# Venue of each Table II method, as the paper prints it after the name.
TABLE2_VENUES = {
    "MCAN": "CVPR'19", "PSAC": "AAAI'19", "HME": "CVPR'19", "AVSD": "CVPR'19", "HCRN": "CVPR'20",
    "Pano-AVQA": "ICCV'21", "ST-AVQA": "CVPR'22", "LAVISH": "CVPR'23", "QAGL": "TCSVT'24",
    "TSPM": "ACMMM'24", "APL": "AAAI'24", "PSOT†": "AAAI'25", "AVAF-Net": "AAAI'25",
    "SHMamba": "TASLP'25", "CoQo†": "IJCV'25", "QA-TIGER": "CVPR'25", "AV-Master": "ours",
}

# Table III: 9 question types x (head, tail), then the overall Avg.
_TABLE3 = """\
HCAtn	61.67	41.63	59.09	47.14	56.52	9.20	67.01	53.16	66.57	61.13	59.53	12.48	37.05	42.48	48.81	60.12	33.82	39.26	51.90
MCAN	75.02	60.16	58.89	50.09	64.58	26.69	66.48	62.25	51.29	67.29	64.76	25.28	46.11	61.61	50.57	52.40	34.64	58.05	57.27
PSAC	53.01	56.68	57.41	48.12	49.55	26.43	72.96	60.69	50.56	55.54	56.70	19.58	41.98	52.30	38.13	58.92	26.68	46.24	50.45
HME	62.60	53.95	54.97	58.29	50.95	16.46	73.25	58.60	65.74	66.49	63.18	17.18	33.79	46.03	53.20	69.57	33.95	41.57	53.66
AVSD	54.00	47.84	60.61	47.79	60.34	10.07	74.78	61.43	66.28	61.98	46.21	8.06	33.00	40.35	51.98	66.00	40.14	41.52	52.33
FCNLSTM	66.23	36.48	64.78	51.24	61.75	5.31	54.86	51.06	64.76	78.52	62.69	7.23	46.66	57.30	43.13	71.67	37.02	30.78	54.12
HCRN	55.53	53.31	47.17	32.44	41.87	23.55	39.40	51.27	41.81	65.45	54.58	19.57	36.62	42.72	33.33	36.87	40.47	44.13	43.92
Pano-AVQA	50.57	43.45	50.78	44.93	47.28	15.50	67.19	65.51	52.37	22.04	52.21	21.52	44.35	61.69	45.61	40.49	35.00	49.33	47.40
ST-AVQA	56.40	41.48	62.28	57.59	59.86	12.94	63.31	54.00	73.35	77.26	48.31	8.41	35.35	40.49	53.30	62.44	40.25	38.15	52.80
LAVISH	61.73	43.99	65.06	60.38	65.53	11.13	70.21	64.73	77.83	79.46	49.88	14.87	41.76	41.20	59.26	65.10	41.84	46.26	57.63
TSPM	81.65	71.80	67.66	49.56	78.29	47.56	80.58	73.18	69.15	82.79	77.09	38.64	42.24	57.37	52.07	68.86	39.23	49.36	66.30
QA-TIGER	82.67	75.82	71.75	43.11	81.30	54.59	84.76	75.59	72.84	78.56	76.70	33.55	48.22	64.65	37.55	80.47	36.85	62.96	67.99
AV-Master	84.90	72.61	70.67	49.22	83.48	57.40	87.39	79.33	75.55	78.41	80.18	35.28	55.39	77.41	47.76	70.80	46.49	69.99	71.19
"""

_TABLE4 = """\
Test	Training	Methods	A-QA	V-QA	AV-QA	Avg
Bias	Bias	ST-AVQA	76.86	77.70	69.59	73.07
Bias	Bias	LAVISH	76.73	80.96	70.80	74.59
Bias	Bias	QA-TIGER	79.13	84.83	72.37	76.93
Bias	Bias	AV-Master	79.31	86.54	74.12	78.39
Bias	Balance	ST-AVQA	76.18	77.20	67.96	71.92
Bias	Balance	LAVISH	75.56	80.83	69.27	73.51
Bias	Balance	LAST	77.10	82.99	70.86	75.24
Bias	Balance	LAST-Att	77.29	83.47	71.05	75.45
Bias	Balance	QA-TIGER	77.07	85.93	71.20	76.57
Bias	Balance	AV-Master	79.25	86.87	71.52	77.03
Balance	Bias	ST-AVQA	73.34	76.82	64.51	69.40
Balance	Bias	LAVISH	73.14	79.70	65.01	70.39
Balance	Bias	QA-TIGER	77.57	84.84	67.43	73.91
Balance	Bias	AV-Master	78.22	86.42	69.11	75.37
Balance	Balance	ST-AVQA	75.50	77.67	66.32	71.02
Balance	Balance	LAVISH	76.15	81.32	68.28	73.18
Balance	Balance	LAST	78.08	83.29	69.72	74.85
Balance	Balance	LAST-Att	78.56	84.07	70.30	75.44
Balance	Balance	QA-TIGER	79.90	86.95	70.22	76.43
Balance	Balance	AV-Master	80.84	87.37	70.29	76.75
"""

_TABLE5 = """\
Methods	Ensemble	Total Accuracy (%)
HME	HAVF	85.0
PSAC	HAVF	87.4
LADNet	HAVF	84.1
ACRTTransformer	HAVF	87.8
HGA	HAVF	87.7
HCRN	HAVF	89.0
SaSR-Net	—	89.9
PSTP-Net	—	90.2
TSPM	—	90.8
MCD	—	90.8
AV-Master	—	91.4
"""

# Table VI as printed; PT is the pre-training data amount, Params the model size ("-"/"N/A" kept).
_TABLE6 = """\
Methods	V-Enc.	A-Enc.	Z-S	PT	Params	ACC
OneLLM	CLIP_L	CLIP_L	yes	1008.5M	7B	47.6
ChatBridge	ViT_G	BEAT	yes	130.0M	13B	43.0
CAT	ImageBind	Imagebind	yes	3.1M	7B	48.6
CAT+	ImageBind	Imagebind	yes	0.2M	7B	50.1
VideoLLaMa	EVACLIP_G	Imagebind	yes	2.8M	7B	36.6
AVLLM	CLIP_L	CLAP	yes	1.6M	13B	45.2
AVicuna	CLIP_L	CLAP	yes	1.1M	7B	49.6
CAD	ViT	PANNs	no	100.0M	-	78.3
VAST	EVACLIP_G	BEATs	no	42.0M	1.3B	80.7
VALOR	CLIP_L	AST	no	33.5M	593M	78.9
AV-Master	CLIP_L	VGGish	no	N/A	61M	78.5
"""

_TABLE7 = """\
Methods	A-QA	V-QA	AV-QA	Avg
w/o. ALL	73.37	79.23	69.82	72.94
w/o. AVFC	79.83	85.55	74.04	78.11
w/o. DPCL	78.83	85.71	73.78	77.84
w/o. GPAP	77.90	85.05	73.10	77.12
w/o. TDPP	78.77	83.73	72.94	76.83
AV-Master	79.95	86.58	74.22	78.51
"""

# Table VIII: which losses are on (1) in each row.
_TABLE8 = """\
#	L_qa	L_c	L_a^p	L_v^p	A-QA	V-QA	AV-QA	Avg
1	1	0	0	0	77.84	84.31	71.11	75.80
2	1	1	0	0	78.15	84.43	70.76	75.69
3	1	1	1	0	79.83	82.74	72.49	76.50
4	1	1	0	1	78.83	86.33	72.63	77.36
5	1	0	1	1	78.83	85.71	73.78	77.84
6	1	1	1	1	79.95	86.58	74.22	78.51
"""
LOSS_COLUMNS = ("L_qa", "L_c", "L_a^p", "L_v^p")

_TABLE9 = """\
Lengths	A-QA	V-QA	AV-QA	Avg
16	80.51	85.96	74.04	78.34
12	80.26	85.88	74.08	78.30
8	79.95	86.58	74.22	78.51
4	80.63	85.22	73.92	78.10
2	80.38	85.84	73.98	78.26
"""

# Table X: A-S = attention-block weight sharing, B-S = learned-bias sharing (1 = shared).
_TABLE10 = """\
#	A-S	B-S	A-QA	V-QA	AV-QA	Avg
1	0	0	79.70	85.80	73.92	78.09
2	1	0	79.95	86.58	74.22	78.51
3	0	1	80.26	85.88	73.59	78.03
4	1	1	80.07	86.29	73.88	78.27
"""

# Table XI, rows re-aligned with the text (see the module docstring); "—" = not given.
_TABLE11 = """\
Visual Encoder	Audio Encoder	Methods	A-QA	V-QA	AV-QA	Avg
Resnet-18	VGGish	ST-AVQA	74.06	74.00	69.54	71.52
Resnet-18	VGGish	AV-Master	78.21	79.23	70.25	74.04
CLIP_B	VGGish	PSTP-Net	70.91	77.26	72.57	73.52
CLIP_B	VGGish	AV-Master	78.40	82.25	72.82	76.31
CLIP_L	VGGish	TSPM	76.91	83.61	73.51	76.79
CLIP_L	VGGish	QA-TIGER	78.58	85.14	73.74	77.62
CLIP_L	VGGish	AV-Master	79.95	86.58	74.22	78.51
CLIP_L	CLAP	PSOT	79.08	87.12	74.07	78.42
CLIP_L	CLAP	AV-Master	—	—	—	79.34
Internvideo2	Internvideo2	CoQo	79.27	87.90	75.80	79.60
Internvideo2	Internvideo2	AV-Master	81.50	88.32	75.86	80.15
"""

_TABLE12 = """\
Methods	A-QA	V-QA	AV-QA	Avg
w/o. APE	79.21	86.50	73.31	77.85
w/o. VPE	79.83	84.02	73.51	77.41
w/o. AVPE	77.65	85.59	72.98	77.15
AV-Master	79.95	86.58	74.22	78.51
"""

_TABLE13 = """\
Methods	A-QA	V-QA	AV-QA	Avg
W-ADD	78.71	81.79	71.86	75.70
MUL	79.70	85.30	73.70	77.84
ADD	79.95	86.58	74.22	78.51
"""

# Figures: only values the text states as numbers. Fig. 5's text gives AV-Master's average
# accuracy without the visual input (A+Q) and without the audio input (V+Q).
_FIG5 = """\
Model	Input	Task	Accuracy
AV-Master	A+Q	Avg	69.8
AV-Master	V+Q	Avg	76.9
"""
# Fig. 8's text names the question word each modality attends to most (no weights are given).
_FIG8 = """\
Modality	Question	Most attended word
Visual	Where is the loudest instrument?	instrument
Audio	Where is the loudest instrument?	loudest
"""
_FIG_EMPTY_COLUMNS = {
    "fig4": ("Model", "Segment length", "Accuracy"),
    "fig6": ("Focus step", "Accuracy"),
    "fig7": ("Weight", "Value", "Accuracy"),
}

CAPTIONS = {
    "table1": "Detailed description of AVQA, MUSIC-AVQA, MUSIC-AVQA-R, and MUSIC-AVQA-v2.0 datasets.",
    "table2": "Experimental results on the MUSIC-AVQA test set. † marks the version using the same audio "
              "encoder as AV-Master.",
    "table3": "Experimental results on the MUSIC-AVQA-R test set, with H and T representing performance on "
              "head (frequent) and tail (rare) answer categories, respectively.",
    "table4": "Experimental results on the MUSIC-AVQA-v2.0 for (a) bias and (b) balanced test sets.",
    "table5": "Experimental results on the test set of AVQA dataset.",
    "table6": "Comparison with pretraining-based methods. Z-S indicates whether the zero-shot setting is used "
              "and PT represents the amount of data used for model pre-training.",
    "table7": "Ablation on the different components of AV-Master.",
    "table8": "Ablation study of different loss functions in AV-Master training.",
    "table9": "Impact of lengths of audio-visual templates.",
    "table10": "Impact of weight sharing strategies. A-S and B-S represent attention block weight sharing and "
               "learned bias weight sharing, respectively.",
    "table11": "Different visual and audio feature extractors.",
    "table12": "Different modality preference enhancements.",
    "table13": "Different enhancement method.",
    "fig4": "The ablation study on the lengths of visual and audio segments and comparison with QA-TIGER.",
    "fig5": "The ablation study on input modalities and comparison with other popular models (AVTS and QA-TIGER).",
    "fig6": "Visualization of the audio-visual focus capturing process, including the accuracy at different "
            "time steps and the overall trend curve.",
    "fig7": "The effects of four trade-off parameters on the MUSIC-AVQA dataset including lambda_qa, "
            "lambda_a^p, lambda_v^p and lambda_c.",
    "fig8": "The attention visualization for video-question (upper) and audio-question (lower), with attention "
            "intensity indicated by the color scale on the right.",
}

# What the paper says about each figure in words (quoted or closely paraphrased from Section IV).
CLAIMS = {
    "fig4": (
        "When the amount of audio-visual input decreases, the overall performance of all models shows a "
        "downward trend.",
        "Compared with QA-TIGER, AV-Master maintains a relatively stable performance decline when facing "
        "reduced audio-visual content.",
        "When the segment length is 48, AV-Master's performance shows a slight drop.",
    ),
    "fig5": (
        "All models demonstrate improved performance when the visual modality is present.",
        "AV-Master achieves the highest average accuracy across both input settings: 69.8% with A+Q and "
        "76.9% with V+Q.",
        "Compared to QA-TIGER, AV-Master shows consistent improvements across all sub-tasks (A-QA, V-QA, AV-QA).",
        "The gap between A+Q and V+Q is larger for QA-TIGER and AV-Master than for AVST.",
    ),
    "fig6": (
        "The accuracy remains relatively stable during the first 40 focus steps.",
        "Starting at step 45, the accuracy begins to rise significantly, reaching its peak at step 60.",
    ),
    "fig7": (
        "Each weight is varied with the others fixed at 1.0.",
        "Increasing lambda_qa from 0.4 to 1.0 significantly improves accuracy; beyond a threshold "
        "(e.g. 1.6) accuracy declines slightly.",
        "Similar patterns are observed for lambda_a^p, lambda_v^p and lambda_c; all four set to 1.0 gives the "
        "best overall performance.",
    ),
    "fig8": (
        "For the question 'Where is the loudest instrument?' the visual modality primarily attends to "
        "'instrument' and pays minimal attention to 'loudest'.",
        "The audio modality places significant focus on 'loudest'.",
    ),
}

NAMES: tuple[str, ...] = tuple(CAPTIONS)


def _read(text: str, index, header: bool = True) -> pd.DataFrame:
    """Parse one tab-separated block; "—" becomes NaN; the paper's "Methods" column becomes `method`."""
    frame = pd.read_csv(StringIO(text), sep="\t", header=0 if header else None, na_values=["—"],
                        keep_default_na=False, index_col=index)
    return frame.rename_axis(index=lambda n: METHOD if n == "Methods" else n)


def _summary(text: str, index) -> pd.DataFrame:
    frame = _read(text, index)
    frame[list(SUMMARY_COLUMNS)] = frame[list(SUMMARY_COLUMNS)].astype(float)
    return frame


def _table2() -> pd.DataFrame:
    frame = _read(_TABLE2, 0, header=False).astype(float)
    frame.index.name = METHOD
    frame.columns = pd.MultiIndex.from_tuples(TABLE2_COLUMNS)
    return frame


def _table3() -> pd.DataFrame:
    frame = _read(_TABLE3, 0, header=False).astype(float)
    frame.index.name = METHOD
    frame.columns = pd.MultiIndex.from_tuples(TABLE3_COLUMNS)
    return frame


def _flags(frame: pd.DataFrame, columns) -> pd.DataFrame:
    frame[list(columns)] = frame[list(columns)].astype(bool)
    return frame


def _table6() -> pd.DataFrame:
    frame = _read(_TABLE6, 0)
    frame["Z-S"] = frame["Z-S"].map({"yes": True, "no": False})
    # Numeric copies (in millions) of the two size columns, NaN where the paper gives none.
    frame["PT (millions)"] = frame["PT"].map(_millions)
    frame[TABLE6_PARAMS] = frame["Params"].map(_millions)
    return frame


def _millions(text: str) -> float:
    if text.endswith("B"):
        return float(text[:-1]) * 1000.0
    if text.endswith("M"):
        return float(text[:-1])
    return np.nan  # "-" or "N/A"


def _figure(name: str) -> pd.DataFrame:
    if name == "fig5":
        return _read(_FIG5, None)
    if name == "fig8":
        return _read(_FIG8, None)
    return pd.DataFrame({c: pd.Series(dtype=float) for c in _FIG_EMPTY_COLUMNS[name]})


_BUILDERS = {
    "table1": lambda: _read(_TABLE1, 0).astype("Int64"),
    "table2": _table2,
    "table3": _table3,
    "table4": lambda: _summary(_TABLE4, [0, 1, 2]),
    "table5": lambda: _read(_TABLE5, 0).astype({TABLE5_COLUMN: float}),
    "table6": _table6,
    "table7": lambda: _summary(_TABLE7, 0),
    "table8": lambda: _flags(_summary(_TABLE8, 0), LOSS_COLUMNS),
    "table9": lambda: _summary(_TABLE9, 0),
    "table10": lambda: _flags(_summary(_TABLE10, 0), ("A-S", "B-S")),
    "table11": lambda: _summary(_TABLE11, [0, 1, 2]),
    "table12": lambda: _summary(_TABLE12, 0),
    "table13": lambda: _summary(_TABLE13, 0),
    **{name: (lambda name=name: _figure(name)) for name in ("fig4", "fig5", "fig6", "fig7", "fig8")},
}


def table_key(name: str) -> str:
    """The canonical key of a paper table name ("Table II", "table_2" -> "table2"); KeyError for an unknown one."""
    key = str(name).lower().replace(" ", "").replace("_", "")
    key = {"tableii": "table2"}.get(key, key)
    if key not in _BUILDERS:
        raise KeyError(f"unknown paper table {name!r}; choose one of {', '.join(NAMES)}")
    return key


def paper_table(name: str) -> pd.DataFrame:
    """The paper's numbers for `name` ("table1".."table13", "fig4".."fig8") as a new DataFrame.

    The caption is in `.attrs["caption"]`; values are percentages as printed (NaN = not reported).
    """
    key = table_key(name)
    frame = _BUILDERS[key]()
    frame.attrs["caption"] = CAPTIONS[key]
    frame.attrs["source"] = f"AV-Master paper, {key}"
    return frame


def paper_caption(name: str) -> str:
    """The caption of a table or figure of the paper."""
    return CAPTIONS[table_key(name)]


def paper_claims(name: str) -> tuple[str, ...]:
    """What the paper's text says about a figure, in words (empty for tables)."""
    return CLAIMS.get(table_key(name), ())


def summary_columns(table: pd.DataFrame) -> pd.DataFrame:
    """A table in the Table II layout (paper_table("table2") or scoring.score) reduced to the
    A-QA / V-QA / AV-QA / Avg columns that Tables IV and VII-XIII use."""
    missing = [c for c in SUMMARY_FROM_TABLE2.values() if c not in table.columns]
    if missing:
        raise KeyError(f"table lacks the Table II columns {missing}; pass paper_table('table2') or a "
                       "scoring.score result")
    out = pd.DataFrame({short: table[col] for short, col in SUMMARY_FROM_TABLE2.items()}, index=table.index)
    return out


# --------------------------------------------------------------------------------------------
# Paper vs ours: which of our runs fills which row, and the side-by-side tables the notebooks write.

FULL_MODEL_RUN = experiments.FULL_MODEL  # experiments identical to the full model reuse its run


def _experiment_rows() -> dict[str, dict]:
    """{table: {paper row label: run}} from the experiments registry, rows in the paper's order; plus the
    multiple-choice benchmark's table (Table V: AV-Master is `experiments.full_model_for("avqa")`, whose runs
    lie under `reproduce`'s `<runs>/avqa/standard/`, or the synthetic variant's `results/runs/synthetic_mc/`)."""
    from . import dataset_registry

    rows = {}
    for spec in dataset_registry.SPECS:
        if spec.files and not spec.answers_in_vocab and spec.table not in experiments.sources():
            rows[spec.table] = {experiments.OURS: experiments.full_model_for(spec.name)}
    for source in experiments.sources():
        if source.startswith("table"):
            cells, order = experiments.filling(source), list(paper_table(source).index)
            # the paper's rows in its order, then rows of ours it does not have (Table XIII's logit sum)
            rows[source] = dict(sorted(cells.items(), key=lambda item: order.index(item[0]) if item[0] in order
                                       else len(order)))
    return dict(sorted(rows.items(), key=lambda item: NAMES.index(item[0])))


# table -> {paper row label: experiment name in avmaster_core.config.EXPERIMENTS (= run folder)}, derived from
# avmaster_core.experiments (each entry's `fills`).
EXPERIMENT_ROWS: dict[str, dict] = _experiment_rows()
RUN_TABLE = "test_table.csv"  # what engine.train writes into every run folder (scoring.score's Table II layout)


def read_run_table(run_dir) -> pd.DataFrame:
    """The test table of one finished run folder `<runs>/<experiment>/<seed>`, in the layout its dataset is
    scored in (scoring.score): Table II's two header rows, Table III's three, or one (Tables IV, V)."""
    from pathlib import Path

    from .provenance import note_run_read

    path = Path(run_dir) / RUN_TABLE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run in {run_dir} has not finished (or was never started)")
    note_run_read(run_dir)  # a table written next will list this run (provenance sidecar)
    lines = path.read_text().splitlines()
    # a multi-level header is written as rows with an empty first cell (the index has no name on them)
    levels = next(i for i, line in enumerate(lines) if not line.startswith(","))
    if levels <= 1:
        return pd.read_csv(path, header=0, index_col=0)
    table = pd.read_csv(path, header=list(range(levels)), index_col=0)
    return table.set_axis(pd.MultiIndex.from_tuples([tuple(c) for c in table.columns]), axis=1)


def in_table_layout(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """A run's test table in the columns of paper table `name`: Table II's as it is, Table V's total accuracy
    (a Table II-layout run, e.g. the synthetic multiple-choice variant, gives its overall average), else the
    A-QA / V-QA / AV-QA / Avg summary."""
    key = table_key(name)
    if key == "table2":
        return table
    if key == "table5":
        if TABLE5_COLUMN in table.columns:
            return table[[TABLE5_COLUMN]]
        return pd.DataFrame({TABLE5_COLUMN: summary_columns(table)["Avg"]}, index=table.index)
    if key == "table6":  # its ACC is Table II's overall average
        return pd.DataFrame({TABLE6_ACC: summary_columns(table)["Avg"]}, index=table.index)
    return summary_columns(table)


def finished_runs(runs_dir, experiment: str, seeds=None) -> dict[int, pd.DataFrame]:
    """{seed: test table} of the finished runs of `experiment` (all seeds found, or only `seeds`)."""
    from pathlib import Path

    folder = Path(runs_dir) / experiment
    found = sorted(int(p.name) for p in folder.glob("*") if p.name.isdigit() and (p / RUN_TABLE).is_file()) \
        if folder.is_dir() else []
    chosen = found if seeds is None else [s for s in (int(s) for s in seeds) if s in found]
    return {seed: read_run_table(folder / str(seed)) for seed in chosen}


def ours_table(name: str, runs_dir="results/runs", seeds=None, statistic: str = "mean") -> pd.DataFrame:
    """Our finished runs in the layout of the paper's table `name`: one row per paper row that has at
    least one run (the mean, or "std": the sample std over seeds, ddof=1, NaN for one seed), the paper's row
    labels, the paper's numeric columns.

    `.attrs["seeds"]` maps each row to the seeds averaged; rows without a run are absent.
    """
    key = table_key(name)
    if key not in EXPERIMENT_ROWS:
        raise KeyError(f"{name}: none of our runs maps onto this table's rows; tables with runs: "
                       f"{', '.join(EXPERIMENT_ROWS)}")
    if statistic not in ("mean", "std"):
        raise ValueError(f"statistic must be 'mean' or 'std', not {statistic!r}")
    paper = paper_table(key)
    rows, used = {}, {}
    for label, experiment in EXPERIMENT_ROWS[key].items():
        runs = finished_runs(runs_dir, experiment, seeds)
        if not runs:
            continue
        tables = pd.concat([in_table_layout(key, t) for t in runs.values()])
        rows[label] = tables.std(ddof=1) if statistic == "std" else tables.mean()
        used[label] = sorted(runs)
    columns = list(TABLE2_COLUMNS) if key == "table2" else [TABLE5_COLUMN] if key == "table5" else \
        [TABLE6_ACC] if key == "table6" else list(SUMMARY_COLUMNS)
    index = pd.Index(list(rows), name=paper.index.name) if paper.index.nlevels == 1 else \
        pd.MultiIndex.from_tuples(list(rows), names=paper.index.names)
    out = pd.DataFrame([rows[r].reindex(columns).to_numpy(dtype=float) for r in rows], index=index,
                       columns=pd.MultiIndex.from_tuples(columns) if key == "table2" else columns)
    out.attrs["seeds"] = used
    return out


def side_by_side(name: str, ours: pd.DataFrame | None = None, ours_label: str = "ours") -> pd.DataFrame:
    """The paper's table `name` and ours next to each other: top column level `source` = paper / ours
    (`ours_label`, e.g. "ours (synthetic)"), rows = the paper's rows (ours is NaN where we have no run)."""
    paper = with_rows_of(paper_table(name), ours)
    numeric = [c for c in paper.columns if pd.api.types.is_float_dtype(paper[c])]
    if ours is None:
        ours = pd.DataFrame(index=paper.index, columns=paper[numeric].columns, dtype=float)
    return pd.concat({"paper": paper, ours_label: ours.reindex(index=paper.index, columns=paper[numeric].columns)},
                     axis=1, names=["source"])


def with_rows_of(paper: pd.DataFrame, ours: pd.DataFrame | None) -> pd.DataFrame:
    """The paper's table with the rows of `ours` it does not publish appended (values NaN: "not published"),
    e.g. Table XIII's logit sum of the released code."""
    extra = [] if ours is None else [r for r in ours.index if r not in paper.index]
    return paper if not extra else paper.reindex(list(paper.index) + extra)


def missing_rows(name: str, ours: pd.DataFrame) -> dict:
    """{paper row label: experiment} of the rows of table `name` that `ours` (from `ours_table`) lacks."""
    key = table_key(name)
    return {label: experiment for label, experiment in EXPERIMENT_ROWS.get(key, {}).items()
            if label not in ours.index}
