"""``fab deploy``, ``fab switch``, ``fab canary``, ``fab promote``, ``fab rollback``.

Blue-green with instant rollback and a canary split, on the local target::

    fab deploy --version 0.2.0     idle slot runs 0.2.0 (migrations, health gate); no traffic yet
    fab canary --weight 10         10% of requests to the idle slot; metrics gate; auto-revert
    fab canary --weight 50         (gated: the canary must be healthy at 10% first)
    fab promote                    the canary's slot becomes active (gated), 100% of traffic
    fab switch                     blue-green without a canary: gate, switch, analyse, auto-revert
    fab rollback                   traffic back to the previous slot (or the canary aborted), now

Every task takes ``--stack`` and ``--dry-run`` and appends a run record; each gate's verdict,
value and threshold are in the record's ``notes.gates``, the decision in ``notes.decision``.
The docker and kubernetes targets take the same decisions as stack config
(``pulumi config set recon:backend ...; pulumi up``): see docs/releases.md.
"""

from __future__ import annotations

import re
import time

from invoke import task

from infra.services import is_secret_name
from ops.console import fail, progress
from ops.errors import GateFailed
from ops.runlog import Run
from ops.tasks.shared import STACK_HELP, release_session

VERSION_RE = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")
ENV_KEY_RE = re.compile(r"^RECON_[A-Z0-9_]{1,64}$")


def _gate(run: Run, results) -> str:
    """Record gate results in the run, print them, return the overall verdict."""
    from ops.release.gates import verdict
    for g in results:
        run.notes["gates"].append(g.record())
        progress(f"gate {g.gate} [{g.slot} {g.version}]: {g.verdict.upper()}: {g.detail}")
    return verdict(results)


def _analyse(spec, driver, run: Run, slot: str, version: str, title: str) -> str:
    """Wait one analysis window with traffic flowing, then judge the slot from Prometheus."""
    from ops.release.gates import Prometheus, metrics, verdict, wait_scraped
    window = spec.release.analysis_window_s
    prom = Prometheus(driver.prometheus_url())

    def judge():
        replicas = len(driver.backends(slot))
        if not wait_scraped(prom, slot, version, replicas, timeout_s=3 * spec.prometheus.scrape_interval_s + 10):
            progress(f"  Prometheus does not scrape every replica of {slot} ({version}) yet; analysing anyway")
        time.sleep(window)
        results = metrics(spec, prom, slot, version)
        if verdict(results) == "inconclusive":  # late data (reload, first scrapes): one more window
            progress(f"  no data on {slot} yet; one more window of {window}s")
            time.sleep(window)
            results = metrics(spec, prom, slot, version)
        return results

    out = run.step(title, f"wait until Prometheus scrapes slot={slot},version={version}; sleep {window}; query "
                          f"error rate and p95 over {window}s vs release.max_error_rate={spec.release.max_error_rate}, "
                          f"max_p95_seconds={spec.release.max_p95_seconds} (no data: one more window)", judge)
    return "pass" if out is None else _gate(run, out)


def _health(spec, driver, run: Run, slot: str, version: str, timeout_s: float | None = None) -> str:
    t = timeout_s or spec.release.health_timeout_s
    out = run.step(f"gate: health of slot {slot} ({version})",
                   f"GET /health and /ready on {', '.join(driver.backends(slot))} until 200 "
                   f"(release.health_timeout_s={t})",
                   lambda: driver.slot_health(slot, version, t))
    return "pass" if out is None else _gate(run, [out])


def _apply(driver, run: Run, st, title: str, task_name: str, expect_only: str | None) -> float:
    """One state change: apply it, confirm through Nginx, then let the processes follow.

    Returns the monotonic time at which Nginx was confirmed serving the new state."""
    summary = f"active={st.active_slot} canary_weight={st.canary_weight} " + \
              " ".join(f"{s}={st.slots[s].version}{'' if st.slots[s].running else '(stopped)'}" for s in st.slots)
    run.step(title, f"write release.json ({summary}); render nginx.conf + prometheus.yml; nginx -t; "
                    "supervisorctl signal HUP nginx prometheus",
             lambda: driver.apply(st, task_name, processes=False))
    run.step("confirm through Nginx", "GET /nginx/upstream-health x10 via Nginx, check X-Recon-Slot",
             lambda: progress("  " + driver.confirm_edge(expect_only)))
    confirmed = time.monotonic()
    run.step("processes follow: workers onto the active version, slots started/stopped",
             "render supervisord.conf; supervisorctl reread/update; start backend-*/worker-* not running",
             lambda: driver.sync_processes())
    return confirmed


def _revert(driver, run: Run, before, task_name: str, reason: str) -> None:
    run.notes["decision"] = f"reverted: {reason}"
    progress(f"REVERTING: {reason}")
    expect = before.active_slot if before.canary_weight == 0 else None
    _apply(driver, run, before, "revert to the state before this task", task_name, expect)
    raise GateFailed(f"{task_name} reverted automatically: {reason}; the run record "
                     f"({driver.inventory.run_log}) has each gate's value and threshold")


def _reason(run: Run) -> str:
    bad = [g for g in run.notes["gates"] if g["verdict"] == "fail"]
    return "; ".join(f"{g['gate']} of {g['slot']} {g['version']}: {g['detail']}" for g in bad) or "gate failed"


def _parse_env(env: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env or []:
        key, sep, value = item.partition("=")
        if not sep or not ENV_KEY_RE.match(key):
            raise fail(f"--env {item!r}: expected RECON_NAME=value (names RECON_[A-Z0-9_]+)", code=2)
        if is_secret_name(key) or "URL" in key:  # connection URLs carry credentials too
            raise fail(f"--env {key}: secrets and connection URLs do not go on a command line or into "
                       "release.json; the stack provides them", code=2)
        out[key] = value
    return out


@task(help={"version": "version label for the idle slot (A-Z a-z 0-9 _ . + -, 1..64)",
            "env": "extra RECON_* setting for this version, KEY=VALUE (repeatable; no secrets)",
            "stack": STACK_HELP, "dry-run": "print the plan, change nothing",
            "yes": "confirm replacing the previous slot (the rollback target)"},
      iterable=["env"])
def deploy(c, version, env=None, stack=None, dry_run=False, yes=False):
    """Start VERSION in the idle slot: migrations, start, health gate. No traffic moves.

    If the health gate fails the slot is stopped again and the previous state restored.
    Replacing the slot that `fab rollback` would return to needs --yes.
    """
    if not VERSION_RE.match(str(version)):
        raise fail(f"--version {version!r}: allowed 1..64 of A-Z a-z 0-9 _ . + -", code=2)
    extra = _parse_env(env)
    with release_session(stack, "deploy", {"version": version, "env": extra}, dry_run, yes) as (spec, driver, run):
        if spec.target != "local":
            raise fail(f"stack {spec.name!r} has target {spec.target!r}: there a slot's version is its image. Set it "
                       f"with `pulumi config set --path recon:backend.slots.{driver.state().idle_slot}.version "
                       f"{version} -s {spec.name}` (and .image), run `pulumi up -s {spec.name}`, then move traffic "
                       "with `fab canary`/`fab switch` (docs/releases.md)", code=2)
        before = driver.state()
        if before.canary_weight:
            raise fail(f"a canary of slot {before.idle_slot} at {before.canary_weight}% is in progress; "
                       "finish it (fab promote) or abort it (fab rollback) before deploying")
        idle = before.idle_slot
        after = before.model_copy(deep=True)
        after.slots[idle].version = version
        after.slots[idle].running = True
        after.slots[idle].env = extra
        replaces_rollback = before.previous_slot == idle and before.slots[idle].running
        if replaces_rollback and not (yes or dry_run):  # ask before the migrations, not half-way
            raise fail(f"slot {idle} runs {before.slots[idle].version}, the version `fab rollback` returns to; "
                       f"deploying {version} over it removes that way back. Re-run with --yes to confirm")
        if replaces_rollback:
            after.previous_slot = None
        run.notes.update(slot=idle, version=version, replaced=before.slots[idle].version)
        run.step(f"migrate the database for {version}", driver.migrate_command(idle),
                 lambda: driver.migrate(idle), destructive=False)
        run.step(f"start slot {idle} with {version}" + (f" (replaces {before.slots[idle].version}, "
                                                         "the rollback target)" if replaces_rollback else ""),
                 f"supervisord: start {', '.join(driver.backends(idle))} "
                 f"(RECON_SLOT={idle} RECON_VERSION={version})",
                 lambda: driver.apply(after, "deploy"), destructive=replaces_rollback)
        if _health(spec, driver, run, idle, version) != "pass":
            before_run = before.model_copy(deep=True)
            if replaces_rollback:
                before_run.slots[idle].running = False  # its old version is gone
            run.notes["decision"] = "reverted: health gate failed"
            run.step(f"stop slot {idle} again", "supervisord: stop " + ", ".join(driver.backends(idle)),
                     lambda: driver.apply(before_run, "deploy"))
            raise GateFailed(f"deploy of {version} reverted: {_reason(run)}")
        run.notes["decision"] = f"deployed {version} to idle slot {idle}"
    if not dry_run:
        progress(f"slot {idle} runs {version} and is healthy; no traffic yet. Next: fab canary --weight 10, "
                 "or fab switch")


@task(help={"stack": STACK_HELP, "dry-run": "print the plan, change nothing"})
def switch(c, stack=None, dry_run=False):
    """Blue-green: make the idle slot active (Nginx reload, no request dropped), then analyse.

    Gates: health of the idle slot; when a canary is running, its metrics. After the switch one
    analysis window (release.analysis_window_s) of traffic is judged; a failed gate switches back.
    """
    _switch(stack, dry_run, "switch", require_canary=False)


@task(help={"stack": STACK_HELP, "dry-run": "print the plan, change nothing"})
def promote(c, stack=None, dry_run=False):
    """Finish a canary: its slot becomes active with 100% of traffic (gated like switch)."""
    _switch(stack, dry_run, "promote", require_canary=True)


def _switch(stack, dry_run: bool, task_name: str, require_canary: bool) -> None:
    with release_session(stack, task_name, {}, dry_run) as (spec, driver, run):
        before = driver.state()
        new = before.idle_slot
        if require_canary and not before.canary_weight:
            raise fail("no canary in progress (canary_weight is 0); start one with `fab canary --weight N`, "
                       "or switch without one with `fab switch`")
        if not before.slots[new].running:
            raise fail(f"slot {new} is not running; deploy a version to it first (fab deploy --version V)")
        version = before.slots[new].version
        if _health(spec, driver, run, new, version) != "pass":
            run.notes["decision"] = "aborted: health gate failed, nothing changed"
            raise GateFailed(f"{task_name} aborted before any change: {_reason(run)}")
        if before.canary_weight:
            v = _analyse(spec, driver, run, new, version, f"gate: canary {new} at {before.canary_weight}% before promotion")
            if v == "fail":
                aborted = before.model_copy(deep=True)
                aborted.canary_weight = 0
                _revert(driver, run, aborted, task_name, _reason(run))
            if v == "inconclusive":
                run.notes["decision"] = "aborted: canary analysis inconclusive (no traffic), nothing changed"
                raise GateFailed(f"{task_name} refused: the canary got no traffic to judge; keep it running "
                                 "with traffic, or fab rollback")
        after = before.model_copy(deep=True)
        after.previous_slot, after.active_slot, after.canary_weight = before.active_slot, new, 0
        t0 = time.monotonic()
        confirmed = _apply(driver, run, after, f"switch traffic: {before.active_slot} -> {new} ({version})",
                           task_name, new)
        run.notes["switch_s"] = round(confirmed - t0, 3)
        v = _analyse(spec, driver, run, new, version, f"gate: analyse {new} ({version}) with all traffic")
        if v == "fail":
            _revert(driver, run, before, task_name, _reason(run))
        run.notes["decision"] = f"switched to {new} ({version})" + (
            "; analysis inconclusive (no traffic in the window): kept, watch it" if v == "inconclusive" else "")
    if not dry_run:
        progress(f"slot {new} ({version}) is active; {before.active_slot} keeps running for fab rollback")


@task(help={"weight": "percent of requests to the idle slot: 0..100 (0 aborts the canary)",
            "stack": STACK_HELP, "dry-run": "print the plan, change nothing"})
def canary(c, weight, stack=None, dry_run=False):
    """Send WEIGHT% of requests to the idle slot; analyse; revert to 0% if a gate fails.

    Raising the weight of a running canary first requires its metrics to pass at the current
    weight. Inconclusive analysis (no traffic) keeps the weight but refuses to raise it.
    """
    try:
        w = int(weight)
    except (TypeError, ValueError):
        raise fail(f"--weight {weight!r}: an integer percent 0..100", code=2) from None
    if not 0 <= w <= 100:
        raise fail(f"--weight {w}: allowed 0..100 (percent of requests to the idle slot)", code=2)
    with release_session(stack, "canary", {"weight": w}, dry_run) as (spec, driver, run):
        before = driver.state()
        slot = before.idle_slot
        version = before.slots[slot].version
        run.notes.update(slot=slot, version=version, from_weight=before.canary_weight, to_weight=w)
        if w and not before.slots[slot].running:
            raise fail(f"slot {slot} is not running; deploy a version to it first (fab deploy --version V)")
        if w and version == before.slots[before.active_slot].version:
            raise fail(f"--weight {w}: both slots run {version}; a canary needs a new version in slot {slot} "
                       "(fab deploy --version V)")
        if w and _health(spec, driver, run, slot, version) != "pass":
            run.notes["decision"] = "aborted: health gate failed, nothing changed"
            raise GateFailed(f"canary aborted before any change: {_reason(run)}")
        if before.canary_weight and w > before.canary_weight:
            v = _analyse(spec, driver, run, slot, version, f"gate: canary at {before.canary_weight}% before raising it")
            if v == "fail":
                reverted = before.model_copy(deep=True)
                reverted.canary_weight = 0
                _revert(driver, run, reverted, "canary", _reason(run))
            if v == "inconclusive":
                run.notes["decision"] = f"refused: no traffic at {before.canary_weight}% to judge; weight kept"
                raise GateFailed(f"canary stays at {before.canary_weight}%: no traffic reached {slot} in the last "
                                 f"{spec.release.analysis_window_s}s to judge it")
        after = before.model_copy(deep=True)
        after.canary_weight = w
        expect = before.active_slot if w == 0 else slot if w == 100 else None
        _apply(driver, run, after, f"set canary weight {before.canary_weight}% -> {w}% to {slot} ({version})",
               "canary", expect)
        if w == 0:
            run.notes["decision"] = f"canary aborted: all traffic to {before.active_slot}"
            return
        v = _analyse(spec, driver, run, slot, version, f"gate: analyse canary {slot} ({version}) at {w}%")
        if v == "fail":
            reverted = before.model_copy(deep=True)
            reverted.canary_weight = 0
            _revert(driver, run, reverted, "canary", _reason(run))
        run.notes["decision"] = f"canary {slot} ({version}) at {w}%" + (
            "; analysis inconclusive (no traffic in the window): kept, not judged" if v == "inconclusive" else
            "; gates passed")
    if not dry_run:
        progress(f"{w}% of requests go to {slot} ({version}). Next: a higher weight, fab promote, or fab rollback")


@task(help={"stack": STACK_HELP, "dry-run": "print the plan, change nothing"})
def rollback(c, stack=None, dry_run=False):
    """Return all traffic to the previous slot now: abort a canary, or undo the last switch.

    No analysis: this is the way back. The target slot must still be running and healthy.
    """
    t0 = time.monotonic()
    with release_session(stack, "rollback", {}, dry_run) as (spec, driver, run):
        before = driver.state()
        after = before.model_copy(deep=True)
        if before.canary_weight:
            after.canary_weight = 0
            target = before.active_slot
            what = f"abort the canary of {before.idle_slot} ({before.canary_weight}%): all traffic to {target}"
        else:
            target = before.previous_slot
            if target is None or target == before.active_slot:
                raise fail(f"nothing to roll back to: slot {before.active_slot} is active and no previous slot is "
                           "recorded (no switch since the stack was created)")
            if not before.slots[target].running:
                raise fail(f"previous slot {target} ({before.slots[target].version}) is no longer running "
                           "(a deploy replaced it); deploy the version you want and fab switch")
            if _health(spec, driver, run, target, before.slots[target].version, timeout_s=3) != "pass":
                run.notes["decision"] = "refused: the previous slot is unhealthy"
                raise GateFailed(f"rollback refused, traffic stays on {before.active_slot}: {_reason(run)}")
            after.active_slot, after.previous_slot = target, before.active_slot
            what = f"{before.active_slot} -> {target} ({before.slots[target].version})"
        confirmed = _apply(driver, run, after, f"roll back: {what}", "rollback", target)
        if not dry_run:  # from the task's start to Nginx confirmed serving only the previous slot
            run.notes["traffic_back_s"] = round(confirmed - t0, 3)
        run.notes["decision"] = f"rolled back: {what}"
    if not dry_run:
        progress(f"rolled back in {time.monotonic() - t0:.2f}s: {what}")
