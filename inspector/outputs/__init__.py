"""Where verdicts leave the box: outputs that never block inspection.

- ``results``: the result feed, one JSON document per verdict (PUB/SUB, CurveZMQ optional),
  and ``Output``, what every output is to the inspection service
- ``modbus``: the PLC's reject gate, a Modbus TCP server the PLC polls
- ``mqtt``: verdicts, status (with a last will), alarms and counters to an MQTT broker
"""

from inspector.outputs.modbus import BoxRegister, CameraRegister, ModbusGate
from inspector.outputs.mqtt import MqttOutput
from inspector.outputs.results import (
    SCHEMA_PATH,
    CurveServer,
    Output,
    ResultPublisher,
    ResultSubscriber,
    curve_server,
)

__all__ = ["SCHEMA_PATH", "BoxRegister", "CameraRegister", "CurveServer", "ModbusGate",
           "MqttOutput", "Output", "ResultPublisher", "ResultSubscriber", "curve_server"]
