"""Sink URIs (``duckdb://PATH``, ``bigquery://PROJECT/DATASET``): Beam-free, for every engine."""

from __future__ import annotations

from urllib.parse import urlparse


class SinkURIError(ValueError):
    pass


def parse_sink_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme == "duckdb":
        path = (parsed.netloc + parsed.path) if parsed.netloc else parsed.path
        if not path:
            raise SinkURIError(f"{uri!r}: no database path")
        return "duckdb", path
    if parsed.scheme == "bigquery":
        from storage.bigquery_store import BigQueryURIError, parse_bigquery_uri

        try:
            parse_bigquery_uri(uri)
        except BigQueryURIError as e:
            raise SinkURIError(str(e)) from None
        return "bigquery", uri
    raise SinkURIError(f"{uri!r}: unsupported sink scheme {parsed.scheme!r} "
                       "(supported: duckdb://, bigquery://)")
