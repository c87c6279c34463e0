"""Entry point of the Dataflow Flex Template (deploy/dataflow/).

The template launcher runs this file with the template's parameters as
``--name=value`` arguments; it builds and submits the same pipeline as
``earlyrisk run``.
"""

from __future__ import annotations

import logging
import sys

from pipelines.screening import run


def main(argv: list[str] | None = None) -> None:
    logging.getLogger().setLevel(logging.INFO)
    result = run(sys.argv[1:] if argv is None else argv, show_progress=False)
    print("\n".join(result.lines()))


if __name__ == "__main__":
    main()
