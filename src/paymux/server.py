"""The serving process: ``python -P -m paymux.server HOST PORT WORKERS`` (what ``paymux serve``
execs once it has checked the configuration).

Kept apart from the CLI so that an API process holds only what serving needs: not typer, not
the CLI's modules, and not rich — structlog imports rich (and pygments) for pretty tracebacks
when it can, which an API process that logs JSON never shows. Every uvicorn worker process
(started by multiprocessing's spawn, which imports this module again as ``__mp_main__``) gets
the same. With the web libraries imported on first use: idle RSS per API process 141 → 126 MB
(docs/deploy.md, Capacity).
"""

from __future__ import annotations

import sys

sys.modules.setdefault("rich", None)  # type: ignore[arg-type]  # import rich → ImportError


def main(argv: list[str]) -> None:
    import uvicorn

    host, port, workers = argv[0], int(argv[1]), int(argv[2])
    uvicorn.run(
        "paymux.app:create_app", factory=True, host=host, port=port, workers=workers,
        log_level="warning", access_log=False, log_config=None,
    )  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
