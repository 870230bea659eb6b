"""Retention (issue 19 section 5): finished jobs whose handler returned are forgotten beyond
the newest max_records or after max_age; a forgotten id reads as unknown except to a wait in
progress and to after=[id]; the CCP4i2 drop-in follows the same policy."""

import sys
import threading

import pytest

import procman
from procman import JobSpec, Manager

from conftest import wait_until


def test_the_default_keeps_10000_records_and_keep_all_is_explicit():
    with Manager() as m:
        assert m.retention == (10000, None)
    with Manager(max_records=None, max_age=None) as m:
        assert m.retention == (None, None)
        ids = [m.run(JobSpec("true")).id for _ in range(3)]
        assert all(m.job(i) is not None for i in ids)
        assert m.evicted() == {}


def test_records_beyond_max_records_are_forgotten_oldest_first():
    with Manager(limit=2, max_records=2) as m:
        ids = [m.run(JobSpec("true")).id for _ in range(4)]
        assert [m.job(i) is None for i in ids] == [True, True, False, False]
        with pytest.raises(KeyError):
            m.wait(ids[0])
        assert m.kill(ids[0]) is None
        assert m.delete(ids[0]) is False
        assert m.wait(ids[3]).status == "finished"
        assert m.evicted() == {"finished": 2}
        # after=[forgotten id] still knows whether it succeeded.
        bad = m.run(JobSpec("false")).id
        m.run(JobSpec("true"))
        m.run(JobSpec("true"))
        assert m.job(bad) is None
        assert m.run(JobSpec("true", after=[ids[0]])).status == "finished"
        assert m.run(JobSpec("true", after=[bad])).status == "dependency_failed"


def test_run_and_a_wait_in_progress_get_their_record_when_it_is_forgotten_at_once():
    with Manager(limit=2, max_records=0) as m:
        for _ in range(10):
            r = m.run(JobSpec("true"))
            assert r.status == "finished"
            assert m.job(r.id) is None
        entered, release = threading.Event(), threading.Event()

        def handler(record):
            entered.set()
            release.wait(30)

        pid = m.start(JobSpec("true", on_finish=handler))
        assert entered.wait(30)
        assert m.job(pid).is_final  # kept while its handler runs
        # The handler needs the GIL to return, and this thread keeps it from release.set()
        # until wait() holds the record (it does so before releasing the GIL): with a long
        # switch interval the interpreter does not hand the GIL over in between.
        old = sys.getswitchinterval()
        sys.setswitchinterval(30)
        try:
            release.set()
            got = m.wait(pid)
        finally:
            sys.setswitchinterval(old)
        assert (got.id, got.status) == (pid, "finished")
        assert m.job(pid) is None
        with pytest.raises(KeyError):
            m.wait(pid)


def test_max_age_forgets_old_records():
    with Manager(max_records=None, max_age=0.3) as m:
        old = m.run(JobSpec("true")).id
        assert m.job(old) is not None
        # Eviction happens when a handler returns or a job is submitted.
        assert wait_until(lambda: m.run(JobSpec("true")) and m.job(old) is None, timeout=30)
        m.set_retention(max_records=None, max_age=None)
        kept = m.run(JobSpec("true")).id
        assert m.retention == (None, None) and m.job(kept) is not None


def test_ccp4i2_drop_in_keeps_get_job_data_for_recent_jobs_and_forgets_old_ones(pm):
    assert pm.manager.retention == (10000, None)
    try:
        assert procman.AsyncProcessManager(max_records=3) is pm
        assert pm.manager.retention == (3, None)
        # Sweep the startProcess info at 4 entries and twice what is left, to see it go.
        pm._PRUNE_MIN = pm._prune_at = 4
        pids = [pm.startProcess("true", [], ifAsync=False) for _ in range(30)]
        # What startProcess was given is forgotten with the job (swept as _jobs grows).
        assert len(pm._jobs) <= 8, len(pm._jobs)
        for pid in pids[-3:]:
            assert pm.getJobData(pid, "status") == "finished"
            assert pm.getJobData(pid, "exitStatus") == 0
            assert pm.getJobData(pid, "command") == "true"
        for pid in pids[:-3]:
            assert pm.getJobData(pid) is None
            assert pm.getJobData(pid, "exitStatus") is None
        assert not set(pids[:-3]) & set(pm._jobs)
    finally:
        pm.setRetention(max_records=10000, max_age=None)
        del pm._PRUNE_MIN
        pm._prune_at = pm._PRUNE_MIN
    assert pm.manager.retention == (10000, None)
