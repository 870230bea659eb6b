"""Containment (issue 15) from Python: the mode chosen at construction and its query, and a
memory limit refused where it cannot apply."""

import os

import pytest

import procman


def test_containment_is_resolved_and_reported():
    with procman.Manager(containment="group") as m:
        assert m.containment == "group"
        assert m.run(procman.JobSpec("true")).status == "finished"
    with procman.Manager() as m:
        # auto: a cgroup per job where this process may make cgroups (root here), else group.
        assert m.containment in ("cgroup", "group")
        if os.geteuid() == 0 and os.path.isdir("/sys/fs/cgroup"):
            assert m.containment == "cgroup"
    with pytest.raises(ValueError):
        procman.Manager(containment="nonsense")


def test_a_memory_limit_needs_cgroup_containment():
    spec = procman.JobSpec("true", memory_limit=1 << 20)
    assert spec.memory_limit == 1 << 20
    with procman.Manager(containment="group") as m:
        with pytest.raises(procman.StartError, match="cgroup containment"):
            m.start(spec)
