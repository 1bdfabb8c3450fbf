"""Watching the running box: alarms raised and cleared from every part's conditions, the
counters from one source, and whether the box is ready.

- ``alarms``: the alarm board (one mechanism: raise, clear, reason, timestamps, listeners)
- ``monitor``: ``Monitor``, the thread that judges every part's conditions, and readiness
- ``metrics``: ``Metrics``, the Prometheus registry read from the monitor
"""

from inspector.monitor.alarms import ALARM_KINDS, Alarm, AlarmBoard, AlarmListener, Condition
from inspector.monitor.metrics import Metrics
from inspector.monitor.monitor import SUMMARY_KEYS, ConditionSource, Monitor

__all__ = ["ALARM_KINDS", "SUMMARY_KEYS", "Alarm", "AlarmBoard", "AlarmListener", "Condition",
           "ConditionSource", "Metrics", "Monitor"]
