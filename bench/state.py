"""State benchmark: encoded bytes of per-user state over the simulated users.

Every simulated user (train and test streams) is replayed through the
incremental scorer with the dedupe window the pipeline keeps, and their
state is encoded with the Beam state coder's encoding
(:meth:`UserState.to_bytes`). Bytes per term divide the whole encoding,
header and dedupe fingerprints included, by the user's distinct in-vocabulary
terms; ``count_bytes_per_term`` counts only the term part (ids and counts).
"""

from __future__ import annotations

import statistics

import numpy as np

from corpora.readers import read_wire_streams
from corpora.simulate import SIMULATED_DIR
from models.portable import PortableModel
from models.scorer import _HEADER, IncrementalScorer, UserState


def _quantile(values: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(values, dtype=float), q))


def run(quick: bool = False, model: PortableModel | None = None) -> dict:
    model = model or PortableModel.load()
    scorer = IncrementalScorer(model)
    splits = ("test",) if quick else ("train", "test")
    sizes, per_term, count_per_term, terms, writings = [], [], [], [], []
    for split in splits:
        streams = read_wire_streams(SIMULATED_DIR / f"{split}.jsonl.gz")
        for subs in streams.users.values():
            st = UserState()
            for s in subs:
                st.remember(s.id)
                scorer.update(st, s.text, s.created_utc)
            data = st.to_bytes()
            k = max(len(st.counts), 1)
            fixed = _HEADER.size + 4 + 8 * len(st.recent)  # header, fingerprints
            sizes.append(len(data))
            per_term.append(len(data) / k)
            count_per_term.append((len(data) - fixed) / k)
            terms.append(len(st.counts))
            writings.append(st.n)
    return {
        "users": len(sizes),
        "writings_median": statistics.median(writings),
        "writings_max": max(writings),
        "terms_median": statistics.median(terms),
        "terms_p99": round(_quantile(terms, 0.99)),
        "bytes_median": statistics.median(sizes),
        "bytes_p99": round(_quantile(sizes, 0.99)),
        "bytes_max": max(sizes),
        "bytes_per_term_median": round(statistics.median(per_term), 2),
        "bytes_per_term_p99": round(_quantile(per_term, 0.99), 2),
        "bytes_per_term_overall": round(sum(sizes) / max(sum(terms), 1), 2),
        "count_bytes_per_term_median": round(statistics.median(count_per_term), 2),
    }
