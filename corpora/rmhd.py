"""The bundled real posts (RMHD sample) as labelled training documents.

``data/rmhd-sample/posts.csv.gz`` holds 7,020 real Reddit posts, 260 from each
of 27 communities (Low et al. 2020, CC BY 4.0; see that folder's README). The
only label the data carry is the community a post was written in, so the label
of a post is a decision about communities:

* **Positive (1): r/depression and r/SuicideWatch.** People there write in the
  first person about their own low mood, hopelessness and suicidal thoughts:
  the construct the screening model is meant to recognise (the eRisk task
  labels users who report a depression diagnosis; their writing looks like
  these communities'). SuicideWatch is kept positive because suicidal
  ideation is the most severe expression of the same construct and an alert
  on it is exactly what a reviewer must see.
* **Control (0): the other 25 communities.** Eight everyday communities
  (finance, politics, teaching, guns, ...) and seventeen mental-health support
  communities (anxiety, bpd, ptsd, lonely, ForeverAlone, ...). The support
  communities are deliberately controls: they talk about mental health,
  therapy and symptoms without being depression, which is what keeps the model
  from learning "mentions mental health" instead of "writes like depression".
  r/lonely and r/ForeverAlone are the closest to depression in tone and are
  the hardest controls; some of their writers are surely depressed, so these
  labels are noisy by construction (see docs/MODEL.md).

Each post becomes one :class:`models.train.TrainingUser` with one writing, its
community and its author: authors let validation keep every writing of a
person on the same side of a fold (26 of 6,994 authors posted twice or more).
"""

from __future__ import annotations

from collections.abc import Sequence

from corpora.simulate import RMHD_SAMPLE, load_posts
from models.train import TrainingUser

POSITIVE_COMMUNITIES = ("depression", "suicidewatch")


def rmhd_documents(path=RMHD_SAMPLE, positive: Sequence[str] = POSITIVE_COMMUNITIES
                   ) -> list[TrainingUser]:
    """Every post as a labelled one-writing document, in file order."""
    posts = load_posts(path)
    communities = {p["subreddit"] for p in posts}
    unknown = sorted(set(positive) - communities)
    if unknown:
        raise ValueError(f"positive communities not in the data: {', '.join(unknown)}")
    pos = set(positive)
    return [
        TrainingUser(
            user=f"rmhd{p['row']:05d}",
            label=int(p["subreddit"] in pos),
            writings=(p["post"],),
            community=p["subreddit"],
            author=p["author"],
        )
        for p in posts
    ]
