"""/metrics: the store's figures in the Prometheus text format, read at each scrape.

Workers and schedulers run in other processes (often on other machines), so counting in
this process would miss their work; the store has it all. Finished counts and the two
histograms cover a recent window (settings.metrics_window_seconds) and are therefore
gauges, the histograms Prometheus "gauge histograms".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crisper import monitor

if TYPE_CHECKING:
    from crisper.app import Crisper

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StoreCollector(Collector):
    def __init__(self, crisper: Crisper) -> None:
        self.crisper = crisper

    def collect(self) -> Iterator[Metric]:
        f = monitor.figures(self.crisper.store, self.crisper.settings, self.crisper.registry)
        window = f"in the last {f.window_seconds:g} s"
        active = GaugeMetricFamily("crisper_jobs_active",
                                   "Jobs not yet finished, by type and state",
                                   labels=["type", "state"])
        for type_, state, n in f.active:
            active.add_metric([type_, state], n)
        yield active
        submitted = GaugeMetricFamily("crisper_jobs_submitted_recent",
                                      f"Jobs submitted {window}, by type", labels=["type"])
        for type_, n in f.submitted:
            submitted.add_metric([type_], n)
        yield submitted
        finished = GaugeMetricFamily("crisper_jobs_finished_recent",
                                     f"Jobs finished {window}, by type and final state",
                                     labels=["type", "state"])
        for type_, state, n in f.finished:
            finished.add_metric([type_, state], n)
        yield finished
        for name, what, rows in (("crisper_job_duration_seconds", "Run time", f.durations),
                                 ("crisper_job_wait_seconds", "Wait from queued to started",
                                  f.waits)):
            family = GaugeHistogramMetricFamily(name, f"{what} of the jobs finished {window}",
                                                labels=["type"])
            for h in rows:
                buckets = [(f"{b:g}", c)
                           for b, c in zip(monitor.BUCKETS, h.cumulative, strict=True)]
                family.add_metric([h.type], [*buckets, ("+Inf", h.count)], h.total)
            yield family
        depth = GaugeMetricFamily("crisper_queue_depth", "Jobs queued and waiting, by queue",
                                  labels=["queue"])
        running = GaugeMetricFamily("crisper_queue_running", "Jobs running, by queue",
                                    labels=["queue"])
        oldest = GaugeMetricFamily("crisper_queue_oldest_waiting_seconds",
                                   "Age of the oldest queued job, by queue", labels=["queue"])
        for q in f.queues:
            depth.add_metric([q.name], q.depth)
            running.add_metric([q.name], q.running)
            oldest.add_metric([q.name], q.oldest_waiting_seconds or 0.0)
        yield from (depth, running, oldest)
        yield GaugeMetricFamily("crisper_lease_rescues_recent",
                                f"Running jobs rescued after their worker died, {window}",
                                value=f.rescues)


def registry_for(crisper: Crisper) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(crisper))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
