"""A run whose rank finds no target with evidence of skill: it ends Ready with reason NoEvidence, trains nothing,
and leaves lastSucceededRun where the last run that trained put it."""

from __future__ import annotations

import json

from test_operator_decide import NOW, RUN, condition, created_jobs, done, pod, run, status_after, view
from trainpipe.contract.names import Stage
from trainpipe.contract.status import RunRef

WORDS = "no target carries evidence of skill: no composite's lower bound clears zero (0 of 6 pass at a false-discovery rate of 0.05)"
EARLIER = RunRef(run_id="r0123456789", models_path="/artifacts/demo/r0123456789/models", finished_at="2026-11-30T10:00:00Z")


def _rank_said_no_evidence():
    rank = done(Stage.RANK)
    status = status_after(selected=None, plan=False, last_succeeded_run=EARLIER)
    report = json.dumps({"selected": 0, "ranked": 6, "noEvidence": WORDS})
    return run(view(status=status), rank, pods=(pod(rank, message=report),)), rank


def test_no_evidence_ends_the_run_ready_with_its_reason_and_creates_no_select_job():
    d, _ = _rank_said_no_evidence()
    assert not created_jobs(d), "nothing after rank may run"
    assert condition(d, "Ready") == ("True", "NoEvidence")
    assert condition(d, "Reconciling")[0] == "False" and condition(d, "Stalled")[0] == "False"
    assert d.status.stage == "Done" and d.status.no_evidence == WORDS
    assert WORDS in d.status.message and f"demo/{RUN}/report.html" in d.status.message
    assert d.status.history[0].run_id == RUN and d.status.history[0].outcome == "NoEvidence"
    assert any(e.reason == "NoEvidence" and e.type == "Normal" for e in d.events)


def test_no_evidence_moves_neither_last_succeeded_run_nor_the_run_on_later_passes():
    first, rank = _rank_said_no_evidence()
    assert first.status.last_succeeded_run == EARLIER
    again = run(view(status=first.status), rank, now=NOW)
    assert not created_jobs(again)
    assert condition(again, "Ready") == ("True", "NoEvidence")
    assert again.status.last_succeeded_run == EARLIER and again.status.history == first.status.history
    assert not any(e.reason == "NoEvidence" for e in again.events), "the event is said once, when the run ends"


def test_a_rank_that_kept_targets_goes_on_to_select_as_before():
    rank = done(Stage.RANK)
    d = run(view(status=status_after(selected=None, plan=False)), rank, pods=(pod(rank, message='{"selected": 2, "ranked": 6}'),))
    assert [m["spec"]["completions"] for m in created_jobs(d).values()] == [2]
    assert d.status.no_evidence is None and condition(d, "Ready") == ("False", "StageRunning")


def test_the_spec_every_pod_reads_carries_the_evidence_settings_and_they_name_the_run():
    # Before: the pods' spec left `evidence` out, so a pipeline's trainAnyway never reached rank, select or plan.
    from test_operator_decide import spec
    from trainpipe.contract.runs import run_id
    from trainpipe_operator.manifests import job_spec_json

    anyway = spec(**{"evidence.trainAnyway": True})
    assert json.loads(job_spec_json(anyway))["evidence"] == {"alpha": 0.05, "trainAnyway": True}
    assert run_id(anyway) != run_id(spec()), "a run with the gates off computes other outputs: another run"
