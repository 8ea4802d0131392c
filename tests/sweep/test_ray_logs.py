"""Ray's log records go through Python's logging, not Ray's own handler on fd 2 (`executor.ray_module`).

Found in the suite: a `sweep --ray local` exported the model on its driver lane's thread (the export's `Said`
captures fd 2, stored beside the cached graph) while `ray.init` on the main thread wrote "Started a local Ray
instance." to fd 2; every later run of that cached graph said Ray's line again as a third-party warning of its own
(a CenterPoint INT8 bisect's report). A record carries its thread: the export keeps only its own thread's."""

from __future__ import annotations

import logging
import threading

import pytest

pytestmark = pytest.mark.needs("ray")


def test_a_ray_record_of_another_thread_is_no_part_of_an_export():
    from cp_debug.export.said import Said
    from cp_debug.sweep.executor import ray_module

    ray_module()
    ray_logger = logging.getLogger("ray._private.worker")  # the logger of ray.init's "Started a local Ray instance."
    assert not logging.getLogger("ray").handlers and logging.getLogger("ray").propagate
    export_logger = logging.getLogger("cp_debug.tests.an_exporter")
    with Said() as said:
        other = threading.Thread(target=ray_logger.warning, args=("Started a local Ray instance.",))
        other.start()
        other.join()
        export_logger.warning("the export's own record")
    assert "Ray instance" not in said.stderr
    assert [r["msg"] for r in said.log] == ["the export's own record"]  # its own thread's record is still kept
