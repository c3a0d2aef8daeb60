"""Prometheus metrics in the text exposition format, without a client library: a few
counters and one latency histogram are all the server needs."""
from __future__ import annotations

import threading
from collections import defaultdict

# Seconds; Prometheus' default buckets plus finer ones where a small model answers.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.bucket_counts = [0] * len(LATENCY_BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0

    def observe(self, path: str, status: int, seconds: float) -> None:
        """One finished request (``path`` is the route, not the raw URL, to bound the labels)."""
        with self._lock:
            self.requests[(path, status)] += 1
            if path == "/predict":
                self.latency_sum += seconds
                self.latency_count += 1
                for i, edge in enumerate(LATENCY_BUCKETS):
                    if seconds <= edge:
                        self.bucket_counts[i] += 1

    def render(self, queue_depth: int, images: int, ready: bool) -> str:
        with self._lock:
            lines = ["# HELP yolos_requests_total HTTP requests by route and status.",
                     "# TYPE yolos_requests_total counter"]
            for (path, status), n in sorted(self.requests.items()):
                lines.append(f'yolos_requests_total{{path="{path}",status="{status}"}} {n}')
            lines += ["# HELP yolos_predict_seconds Latency of /predict requests.",
                      "# TYPE yolos_predict_seconds histogram"]
            for edge, n in zip(LATENCY_BUCKETS, self.bucket_counts):
                lines.append(f'yolos_predict_seconds_bucket{{le="{edge}"}} {n}')
            lines += [f'yolos_predict_seconds_bucket{{le="+Inf"}} {self.latency_count}',
                      f"yolos_predict_seconds_sum {self.latency_sum:.6f}",
                      f"yolos_predict_seconds_count {self.latency_count}"]
        lines += ["# HELP yolos_queue_depth Requests waiting for or in the model.",
                  "# TYPE yolos_queue_depth gauge", f"yolos_queue_depth {queue_depth}",
                  "# HELP yolos_images_processed_total Images the model has run on.",
                  "# TYPE yolos_images_processed_total counter", f"yolos_images_processed_total {images}",
                  "# HELP yolos_ready 1 once the model is loaded and warmed up.",
                  "# TYPE yolos_ready gauge", f"yolos_ready {int(ready)}"]
        return "\n".join(lines) + "\n"
