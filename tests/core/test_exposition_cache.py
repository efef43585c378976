"""The served exposition's caches: per-check lines as bytes, a gzip body streamed from
them (no text body kept for gzip scrapers), the compressed tail computed once per tail."""

from __future__ import annotations

import gzip
import time
from typing import Any

import pytest

from exporter.daemon import families_of
from exporter.metrics import Exposition, ReloadState
from exporter.model import Outcome
from exporter.store import Store
from tests.core.test_metrics import make_spec, populated_store


@pytest.fixture
def exposition(behaviour_kind: None) -> tuple[Store, Exposition]:
    store = populated_store()
    families = families_of(s.spec for s in store.states.values())
    return store, Exposition(store, families, ReloadState(), max_age=0.0)


def joined(chunks: list[Any]) -> bytes:
    return b"".join(bytes(c) for c in chunks)


@pytest.mark.parametrize("openmetrics", [False, True])
async def test_gzip_scrape_is_the_text_scrape_compressed(exposition: Any,
                                                          openmetrics: bool) -> None:
    _, served = exposition
    text = joined(await served.body(openmetrics, gzip=False))
    compressed = joined(await served.body(openmetrics, gzip=True))
    assert gzip.decompress(compressed) == text
    assert text.endswith(b"# EOF\n") is openmetrics


async def test_gzip_scrape_follows_a_new_outcome(exposition: Any) -> None:
    store, served = exposition
    before = gzip.decompress(joined(await served.body(False, gzip=True))).decode()
    line = 'readiness_check_status{check="never-run",section="2.2",severity="critical",' \
        'status="pass"} 1.0'
    assert line not in before
    store.record("never-run", Outcome.passed("ok"), time.time(), 0.5)
    after = gzip.decompress(joined(await served.body(False, gzip=True))).decode()
    assert line in after  # not the compressed body of the previous generation
    assert after == served.render(False).decode()


async def test_a_gzip_scrape_keeps_no_text_body(exposition: Any) -> None:
    _, served = exposition
    served.render(False)  # a text scrape built (and cached) the text body
    assert served._parts
    await served.body(False, gzip=True)
    assert not served._parts  # older than max_age and not asked for again: dropped
    text = joined(await served.body(False, gzip=False))  # a text scrape builds it again
    assert text == served.render(False)


async def test_the_compressed_body_and_tail_are_reused_within_max_age(
        behaviour_kind: None) -> None:
    store = populated_store()
    served = Exposition(store, families_of(s.spec for s in store.states.values()),
                        ReloadState(), max_age=60.0)
    first = await served.body(False, gzip=True)
    second = await served.body(False, gzip=True)
    assert first[0] is second[0] and first[1] is second[1]  # nothing compressed again
    store.record("a", Outcome.failed("no"), time.time(), 0.5)
    third = await served.body(False, gzip=True)  # within max_age: may be the cached one
    assert gzip.decompress(joined(third)) in (gzip.decompress(joined(first)),
                                              served.render(False))


def test_lines_are_kept_as_bytes_one_chunk_per_family(exposition: Any) -> None:
    store, served = exposition
    block = served._lines["b"]
    assert isinstance(block, tuple) and all(isinstance(c, bytes) for c in block)
    body = served.render(False)
    assert all(chunk in body for chunk in block)
    store.replace_specs([*(s.spec for s in store.states.values()), make_spec("later")])
    assert served._lines["b"] is block  # an unchanged check is not rendered again
