"""The inspection core and the appliance assembled around it.

- ``service``: frames in, verdicts out: workers, batching, verdicts, fan-out, hot swap
- ``verdicts``: a frame's outcome, and the verdict as published and recorded
- ``load``: how busy the workers are, for the capacity alarm
- ``preview``: each camera's latest frame, map and verdict for the live view (bounded)
- ``regions``: defect regions (boxes, areas) from an anomaly map
- ``pipeline``: ``inspector run``: cameras, service, recorder and UI started and stopped in order
- ``demo``: ``inspector demo``'s embedded configuration on the bundled data
"""

from inspector.inspection.demo import DEMO_MODEL, demo_config
from inspector.inspection.detectors import load_detector, thread_plan
from inspector.inspection.pipeline import retention_policy, run_pipeline
from inspector.inspection.preview import Preview
from inspector.inspection.regions import find_regions
from inspector.inspection.service import InspectionService

__all__ = ["DEMO_MODEL", "InspectionService", "Preview", "demo_config", "find_regions",
           "load_detector", "retention_policy", "run_pipeline", "thread_plan"]
