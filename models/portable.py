"""The portable, versioned model: tf-idf + logistic regression as arrays and JSON.

A saved model is a directory::

    model.json   format, version, name, tokenizer settings, vocabulary,
                 intercept, training report, array manifest, content hash
    idf.npy      float64[V]   inverse document frequencies (scikit-learn's
                              smooth idf: ln((1 + n) / (1 + df)) + 1)
    coef.npy     float64[V]   logistic-regression weights per term

No pickle anywhere: ``.npy`` files are loaded with ``allow_pickle=False`` and
the content hash (SHA-256 over the canonical JSON and the array bytes) is
checked on load, so a model that was edited or truncated refuses to load.

Scoring semantics (what the incremental scorer reproduces exactly)::

    tf = counts, or 1 + ln(counts) where counts > 0 if sublinear_tf
    x = tf * idf;  x = x / ||x||_2  (zero stays zero)
    p = 1 / (1 + exp(-(intercept + coef . x)))
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.tokenize import Tokenizer

FORMAT = "earlyrisk-model"
FORMAT_VERSION = 1
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"


class ModelFormatError(ValueError):
    """A model directory that is not a valid portable model."""


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass(frozen=True, eq=False)
class PortableModel:
    """An immutable tf-idf + L1 logistic-regression model."""

    name: str
    vocabulary: tuple[str, ...]
    idf: np.ndarray
    coef: np.ndarray
    intercept: float
    sublinear_tf: bool = False
    tokenizer: Tokenizer = field(default_factory=Tokenizer)
    report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v = len(self.vocabulary)
        if self.idf.shape != (v,) or self.coef.shape != (v,):
            raise ModelFormatError(
                f"array shapes {self.idf.shape}, {self.coef.shape} do not match "
                f"a vocabulary of {v} terms"
            )
        if len(set(self.vocabulary)) != v:
            raise ModelFormatError("vocabulary has repeated terms")
        for arr in (self.idf, self.coef):
            arr.setflags(write=False)

    # -- identity -----------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "tokenizer": self.tokenizer.to_json(),
            "vocabulary": list(self.vocabulary),
            "intercept": float(self.intercept),
            "sublinear_tf": bool(self.sublinear_tf),
            "report": self.report,
            "arrays": {"idf": "float64", "coef": "float64"},
        }

    @property
    def content_hash(self) -> str:
        cached = self.__dict__.get("_content_hash")
        if cached is None:
            h = hashlib.sha256(_canonical(self._header()))
            for arr in (self.idf, self.coef):
                h.update(np.ascontiguousarray(arr, dtype="<f8").tobytes())
            cached = h.hexdigest()
            object.__setattr__(self, "_content_hash", cached)
        return cached

    @property
    def version(self) -> str:
        """Short identity written into every score row: ``name-hash12``."""
        return f"{self.name}-{self.content_hash[:12]}"

    @property
    def index(self) -> dict[str, int]:
        """Term -> position in the vocabulary (built once)."""
        cached = self.__dict__.get("_index")
        if cached is None:
            cached = {t: i for i, t in enumerate(self.vocabulary)}
            object.__setattr__(self, "_index", cached)
        return cached

    @property
    def n_nonzero(self) -> int:
        return int(np.count_nonzero(self.coef))

    # -- persistence --------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "idf.npy", np.ascontiguousarray(self.idf, dtype="<f8"), allow_pickle=False)
        np.save(d / "coef.npy", np.ascontiguousarray(self.coef, dtype="<f8"), allow_pickle=False)
        doc = self._header()
        doc["content_hash"] = self.content_hash
        # Vocabulary last and one term per line keeps diffs of model.json readable.
        text = json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=True)
        (d / "model.json").write_text(text + "\n", encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path | None = None) -> PortableModel:
        d = Path(directory) if directory is not None else DEFAULT_MODEL_DIR
        meta_path = d / "model.json"
        if not meta_path.is_file():
            raise ModelFormatError(f"{d} holds no model.json")
        try:
            doc = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ModelFormatError(f"{meta_path}: not JSON ({e})") from None
        if doc.get("format") != FORMAT:
            raise ModelFormatError(f"{meta_path}: not an {FORMAT} file")
        if doc.get("format_version") != FORMAT_VERSION:
            raise ModelFormatError(
                f"{meta_path}: format version {doc.get('format_version')} is not "
                f"supported (this build reads version {FORMAT_VERSION})"
            )
        arrays = {}
        for name in ("idf", "coef"):
            try:
                arrays[name] = np.load(d / f"{name}.npy", allow_pickle=False).astype("<f8")
            except (OSError, ValueError) as e:
                raise ModelFormatError(f"{d / (name + '.npy')}: {e}") from None
        model = cls(
            name=doc["name"],
            vocabulary=tuple(doc["vocabulary"]),
            idf=arrays["idf"],
            coef=arrays["coef"],
            intercept=float(doc["intercept"]),
            sublinear_tf=bool(doc["sublinear_tf"]),
            tokenizer=Tokenizer.from_json(doc["tokenizer"]),
            report=doc.get("report", {}),
        )
        if model.content_hash != doc.get("content_hash"):
            raise ModelFormatError(
                f"{meta_path}: content hash mismatch (stored {doc.get('content_hash')}, "
                f"computed {model.content_hash}); the model was altered or truncated"
            )
        return model

    # -- reference scoring (whole documents, vectorised) --------------------------
    def predict_documents(self, documents: Iterable[str]) -> np.ndarray:
        """Probability for each whole document: the definition the scorer matches."""
        index = {t: i for i, t in enumerate(self.vocabulary)}
        out = []
        for doc in documents:
            x = np.zeros(len(self.vocabulary))
            for term in self.tokenizer.tokens(doc):
                i = index.get(term)
                if i is not None:
                    x[i] += 1.0
            if self.sublinear_tf:
                nz = x > 0
                x[nz] = 1.0 + np.log(x[nz])
            x *= self.idf
            norm = float(np.sqrt(x @ x))
            if norm > 0:
                x /= norm
            out.append(sigmoid(self.intercept + float(self.coef @ x)))
        return np.asarray(out)

    def to_sklearn(self):
        """An equivalent fitted scikit-learn Pipeline (for parity checks)."""
        from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline

        vec = CountVectorizer(
            analyzer=self.tokenizer.tokens,
            vocabulary={t: i for i, t in enumerate(self.vocabulary)},
        )
        tfidf = TfidfTransformer(
            norm="l2", use_idf=True, smooth_idf=True, sublinear_tf=self.sublinear_tf
        )
        tfidf.idf_ = np.array(self.idf)
        lr = LogisticRegression()
        lr.classes_ = np.array([0, 1])
        lr.coef_ = np.array(self.coef).reshape(1, -1)
        lr.intercept_ = np.array([self.intercept])
        lr.n_features_in_ = len(self.vocabulary)
        return Pipeline([("counts", vec), ("tfidf", tfidf), ("lr", lr)])
