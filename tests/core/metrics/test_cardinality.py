"""The label cardinality guard: at most max_label_sets per metric, the rest under __other__."""

from __future__ import annotations

from crown_nexus.core.metrics import OVERFLOW_LABEL, MetricsConfig, MetricsService
from crown_nexus.testing import capture_logs


def test_label_sets_beyond_the_cap_go_to_other() -> None:
    """After the cap, new label sets share one __other__ series; counts are kept; one warning."""
    m = MetricsService(MetricsConfig(max_label_sets=5))
    with capture_logs("warning") as logs:
        for i in range(50):
            m.increment_counter("requests_total", 1, {"path": f"/items/{i}"})
        m.increment_counter("requests_total", 1, {"path": "/items/0"})
    assert m.series_count("requests_total") == 6
    assert m.get_counter_sum("requests_total") == 51
    assert m.get_counter_sum("requests_total", {"path": OVERFLOW_LABEL}) == 45
    assert m.get_counter_sum("requests_total", {"path": "/items/0"}) == 2
    warnings = [e for e in logs if "cardinality" in e["event"]]
    assert len(warnings) == 1 and warnings[0]["metric"] == "requests_total"


def test_cap_applies_per_metric() -> None:
    """Each metric has its own budget of label sets."""
    m = MetricsService(MetricsConfig(max_label_sets=2))
    for i in range(3):
        m.increment_counter("a_total", 1, {"k": str(i)})
        m.observe_histogram("b_seconds", 0.1, {"k": str(i)})
    assert m.get_counter_sum("a_total", {"k": OVERFLOW_LABEL}) == 1
    assert m.get_histogram_quantile("b_seconds", 0.5, {"k": "1"}) == 0.1
    assert m.series_count("a_total") == 3 and m.series_count("b_seconds") == 3
