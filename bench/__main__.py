"""``python -m bench`` (``make bench``): run the benchmarks, print the table, write the results.

Knobs (environment): BENCH_SCALE, BENCH_REPEAT, BENCH_ONLY, BENCH_DATA_DIR, BENCH_OUT, BENCH_KEEP,
BENCH_PLUGINS_DIR and the sizes in bench/config.py; see bench/README.md.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback


def main() -> int:
    from bench import config

    cfg = config.load()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    log = logging.getLogger("bench")

    # The stack's environment goes into os.environ here, before anything imports Airflow
    # (the workers inherit it).
    from bench import env

    stack = env.bench_stack()
    from bench import report
    from bench.sections import SECTION_ORDER, Bench

    log_dir = cfg.data_dir / "logs" / time.strftime("%Y%m%d-%H%M%S")
    load_start = " ".join(f"{x:.1f}" for x in os.getloadavg())
    machine = report.machine()  # git state at the start: what was measured
    started, started_at = time.monotonic(), report.now()
    log.info("bench: sections %s, scale %s, %d repetitions; stack in %s; worker logs in %s",
             ",".join(cfg.sections), cfg.scale, cfg.repeat, stack.state_dir, log_dir)
    errors: dict[str, str] = {}
    bench = None
    try:
        stack.start_postgres()
        stack.start_s3()
        bench = Bench(cfg, stack, log_dir)
        for name, run in SECTION_ORDER.items():
            if name not in cfg.sections:
                continue
            section_started = time.monotonic()
            log.info("=== %s", name)
            try:
                run(bench)
            except Exception as err:  # report what was measured; the failure is listed in the results
                errors[name] = f"{type(err).__name__}: {err}"
                log.error("section %s failed:\n%s", name, traceback.format_exc())
            log.info("=== %s done in %.0f s", name, time.monotonic() - section_started)
    except KeyboardInterrupt:
        errors["interrupted"] = "KeyboardInterrupt"
    finally:
        try:
            stack.down()
        except Exception as err:
            log.warning("stopping the bench stack: %s", err)
        if not cfg.keep_state:
            env.remove_state(stack)
    figures = bench.figures if bench else []
    details = bench.details if bench else {}
    meta = {
        "started_at": started_at,
        "finished_at": report.now(),
        "duration_s": round(time.monotonic() - started, 1),
        "load_start": load_start,
        "load_end": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "machine": machine,
        "config": cfg.as_dict(),
        "code": str(config.code_dir()),
        "code_label": os.environ.get("BENCH_CODE_LABEL")
        or ("working tree" if config.code_dir() == config.REPO else str(config.code_dir())),
        "plugins": os.environ.get("BENCH_PLUGINS_DIR") or "plugins/",
        "dags": os.environ.get("BENCH_DAGS_DIR") or "dags/",
    }
    print(report.table(figures))
    json_path, md_path = report.write(cfg, figures, details, meta, errors)
    print(f"\nwrote {json_path} and {md_path} ({meta['duration_s'] / 60:.1f} min)")
    for name, message in errors.items():
        print(f"section {name} FAILED: {message.splitlines()[0]}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
