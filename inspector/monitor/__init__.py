"""Watching the box: alarms raised and cleared from every part's conditions.

- ``alarms``: the alarm board (one mechanism: raise, clear, reason, timestamps, listeners)
"""

from inspector.monitor.alarms import ALARM_KINDS, Alarm, AlarmBoard, AlarmListener, Condition

__all__ = ["ALARM_KINDS", "Alarm", "AlarmBoard", "AlarmListener", "Condition"]
