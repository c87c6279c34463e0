"""Offline early-risk evaluation: the eRisk protocol over a labelled collection.

``earlyrisk evaluate`` (see :mod:`evaluation.evaluate`) reads a collection
(wire-format JSONL, eRisk 2017/2018 XML, or CSV), runs the decision methods of
:mod:`models.decisions` with the pipeline's own scorer and policies, and
writes the figures of :mod:`models.metrics` with plots.
"""
