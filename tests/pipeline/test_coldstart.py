"""Start-up with the cyclic collector paused: it is restored, nests, and freezes what was made."""

from __future__ import annotations

import gc

import pytest

from pipeline.coldstart import collector_paused


def test_collector_paused_restores_the_collector_and_nests() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause leaves it to the outer one
    assert gc.isenabled()


def test_the_collector_comes_back_when_start_up_fails() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("start-up failed")
    assert gc.isenabled()


def test_what_start_up_made_is_frozen_out_of_later_collections() -> None:
    before = gc.get_freeze_count()
    with collector_paused():
        made = [[i] for i in range(1000)]  # lists are always tracked by the collector
    assert gc.get_freeze_count() >= before + len(made)


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_collection_pause_restores_the_collector_without_freezing() -> None:
    from pipeline.coldstart import no_collection

    was = gc.isenabled()
    gc.enable()
    try:
        frozen = gc.get_freeze_count()
        kept = [[] for _ in range(100)]
        with no_collection():
            assert not gc.isenabled()
            kept += [[] for _ in range(100)]
        assert gc.isenabled() and gc.get_freeze_count() == frozen
    finally:
        gc.enable() if was else gc.disable()
