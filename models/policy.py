"""Decision policies: when a user's running probability becomes an alert.

The live pipeline and the evaluator call the same policy objects, so the
alerts the pipeline raises are exactly the decisions the evaluator scores.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.records import priority_band

BANDS = ("P0", "P1", "P2", "P3", "P4")


def band_index(p: float) -> int:
    """0 for P0 (most urgent) ... 4 for P4."""
    return BANDS.index(priority_band(p))


@dataclass(frozen=True)
class IncrementalPolicy:
    """The paper's Incremental θ: alert as soon as p_user > θ.

    ``max_alerts`` bounds alerts per user (default 1, the paper's behaviour).
    With more than one allowed, a further alert is raised only when the user
    escalates to a more urgent priority band than at the last alert, so a user
    already under review is not re-alerted at every writing.
    """

    threshold: float = 0.5
    max_alerts: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}")
        if self.max_alerts < 1:
            raise ValueError(f"max_alerts must be >= 1, got {self.max_alerts}")

    @property
    def name(self) -> str:
        return f"incremental({self.threshold:g})"

    def decide(self, p_user: float, writings_seen: int, alerts_sent: int, last_band: int) -> bool:
        """True when this writing should raise an alert."""
        if p_user <= self.threshold or alerts_sent >= self.max_alerts:
            return False
        return alerts_sent == 0 or band_index(p_user) < last_band
