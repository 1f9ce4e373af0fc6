"""Flow control: global rate limits, concurrency limits, unique jobs and queue pause."""

from crisper.flow.limits import FlowOptions, RateLimit, flow_options, parse_rate

__all__ = ["FlowOptions", "RateLimit", "flow_options", "parse_rate"]
