"""The local AWS stack: moto behind a front that makes it behave like AWS.

moto (https://github.com/getmoto/moto) serves CloudWatch Logs, SNS, SQS,
CloudWatch and IMDS. The front, an HTTP server on a free loopback port, stands
before it and adds what moto lacks:

* the Smithy RPCv2 CBOR protocol the current Rust CloudWatch SDK speaks, bridged
  to the JSON 1.0 protocol moto serves (gzip request bodies decoded first);
* the TTL header of the IMDSv2 token reply that aws-config needs;
* the request limits of PutLogEvents and PutMetricData that moto does not
  enforce, answered as AWS answers them, and counted;
* fault injection: throttling, 500s, reset connections, latency, outages.

It is driven through standard input, one JSON command a line, one JSON reply a
line on standard output (see `Control`); end of input stops it, so the stack
never outlives the process that started it. Its first line of output is
`{"endpoint": "http://127.0.0.1:PORT"}`.
"""

import base64
import datetime
import gzip
import json
import math
import random
import socket
import struct
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import botocore.session
import cbor2
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.test import Client

CBOR_PREFIX = "/service/GraniteServiceVersion20100801/operation/"
CLOUDWATCH_TARGET = "GraniteServiceVersion20100801"

# PutLogEvents limits (CloudWatch Logs API reference, PutLogEvents).
LOG_BATCH_MAX_BYTES = 1_048_576
LOG_EVENT_OVERHEAD_BYTES = 26
LOG_BATCH_MAX_EVENTS = 10_000
LOG_BATCH_MAX_SPAN_MS = 24 * 3600 * 1000
# PutMetricData limits (CloudWatch API reference, PutMetricData).
METRIC_MAX_DATUMS = 1000
METRIC_MAX_VALUES = 150
METRIC_MAX_DIMENSIONS = 30
METRIC_MAX_PAYLOAD_BYTES = 1_048_576
METRIC_MAX_AGE_S = 14 * 24 * 3600
METRIC_MAX_AHEAD_S = 2 * 3600


class Stats:
    """Counts requests served, requests the limit checks rejected, and faults."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = {}
        self.rejected = {}
        self.faults = {}

    def bump(self, table, key):
        with self.lock:
            table[key] = table.get(key, 0) + 1

    def snapshot(self):
        with self.lock:
            return {
                "requests": dict(self.requests),
                "rejected": dict(self.rejected),
                "rejected_total": sum(self.rejected.values()),
                "faults": dict(self.faults),
            }


class Faults:
    """Faults to inject, per service ("logs", "monitoring", "sns", "sqs", "imds" or "*")."""

    KINDS = ("throttle", "error", "reset")

    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []  # dicts: service, kind, count (or None), fraction
        self.latency_ms = {}

    def add(self, service, kind, count=None, fraction=None):
        if kind not in self.KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {self.KINDS}")
        if (count is None) == (fraction is None):
            raise ValueError("give exactly one of count and fraction")
        with self.lock:
            self.rules.append({"service": service, "kind": kind, "count": count, "fraction": fraction})

    def set_latency(self, service, ms):
        with self.lock:
            self.latency_ms[service] = ms

    def clear(self):
        with self.lock:
            self.rules.clear()
            self.latency_ms.clear()

    def latency_for(self, service):
        with self.lock:
            return self.latency_ms.get(service, self.latency_ms.get("*", 0)) / 1000.0

    def take(self, service):
        """The fault kind to serve this request, or None."""
        with self.lock:
            for rule in self.rules:
                if rule["service"] not in (service, "*"):
                    continue
                if rule["count"] is not None:
                    if rule["count"] > 0:
                        rule["count"] -= 1
                        return rule["kind"]
                elif random.random() < rule["fraction"]:
                    return rule["kind"]
            return None


# === CBOR <-> JSON bridge for CloudWatch ===

CLOUDWATCH_MODEL = botocore.session.get_session().get_service_model("cloudwatch")


def cbor_to_json_value(value):
    """A decoded CBOR request value as moto's JSON 1.0 parser expects it."""
    if isinstance(value, dict):
        return {k: cbor_to_json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [cbor_to_json_value(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, cbor2.CBORTag) and value.tag == 1:
        return value.value
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    return value


def parse_timestamp(value):
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def json_to_cbor_value(shape, value):
    """A JSON reply value, typed by its botocore shape, as the CBOR the SDK expects."""
    if value is None:
        return None
    kind = shape.type_name
    if kind == "structure":
        return {
            name: json_to_cbor_value(shape.members[name], v)
            for name, v in value.items()
            if name in shape.members and v is not None
        }
    if kind == "list":
        return [json_to_cbor_value(shape.member, v) for v in value]
    if kind == "map":
        return {k: json_to_cbor_value(shape.value, v) for k, v in value.items()}
    if kind == "timestamp":
        return cbor2.CBORTag(1, parse_timestamp(value))
    if kind in ("double", "float"):
        return float(value)
    if kind in ("integer", "long"):
        return int(value)
    if kind == "blob":
        return base64.b64decode(value)
    return value


def cbor_error(code, message):
    return cbor2.dumps({"__type": code, "message": message})


# === Limit checks moto does not make ===


def check_put_log_events(request):
    """None, or the message AWS gives for a PutLogEvents request over a limit."""
    events = request.get("logEvents") or []
    if len(events) > LOG_BATCH_MAX_EVENTS:
        return (
            f"1 validation error detected: Value at 'logEvents' failed to satisfy constraint: "
            f"Member must have length less than or equal to {LOG_BATCH_MAX_EVENTS}"
        )
    total = 0
    previous = None
    for event in events:
        message = event.get("message", "")
        size = len(message.encode("utf-8")) + LOG_EVENT_OVERHEAD_BYTES
        if not message:
            return "1 validation error detected: Value '' at 'logEvents.message' failed to satisfy constraint: Member must have length greater than or equal to 1"
        if size > LOG_BATCH_MAX_BYTES:
            return f"Log event too large: {size} bytes exceeds limit of {LOG_BATCH_MAX_BYTES}"
        total += size
        timestamp = event.get("timestamp", 0)
        if previous is not None and timestamp < previous:
            return "Log events in a single PutLogEvents request must be in chronological order."
        previous = timestamp
    if total > LOG_BATCH_MAX_BYTES:
        return f"Upload too large: {total} bytes exceeds limit of {LOG_BATCH_MAX_BYTES}"
    if events and events[-1].get("timestamp", 0) - events[0].get("timestamp", 0) > LOG_BATCH_MAX_SPAN_MS:
        return "The batch of log events in a single PutLogEvents request cannot span more than 24 hours."
    return None


def is_finite_number(value):
    return not isinstance(value, float) or math.isfinite(value)


def check_put_metric_data(request, wire_bytes):
    """None, or the message AWS gives for a PutMetricData request over a limit."""
    if wire_bytes > METRIC_MAX_PAYLOAD_BYTES:
        return f"Request size {wire_bytes} exceeds {METRIC_MAX_PAYLOAD_BYTES} bytes"
    data = request.get("MetricData") or []
    if len(data) > METRIC_MAX_DATUMS:
        return f"The collection MetricData must not have a size greater than {METRIC_MAX_DATUMS}."
    now = time.time()
    for index, datum in enumerate(data, start=1):
        where = f"MetricData.member.{index}"
        values = datum.get("Values") or []
        counts = datum.get("Counts") or []
        if len(values) > METRIC_MAX_VALUES:
            return f"The collection {where}.Values must not have a size greater than {METRIC_MAX_VALUES}."
        if counts and len(counts) != len(values):
            return f"The parameters {where}.Values and {where}.Counts must be of the same size."
        if len(datum.get("Dimensions") or []) > METRIC_MAX_DIMENSIONS:
            return f"The collection {where}.Dimensions must not have a size greater than {METRIC_MAX_DIMENSIONS}."
        numbers = list(values) + list(counts) + [datum.get("Value")]
        stats = datum.get("StatisticValues") or {}
        numbers += list(stats.values())
        if not all(is_finite_number(v) for v in numbers if v is not None):
            return f"The value for parameter {where} contains a non-finite number (NaN or Infinity)."
        stamp = datum.get("Timestamp")
        if stamp is not None:
            seconds = cbor_to_json_value(stamp)
            if seconds < now - METRIC_MAX_AGE_S or seconds > now + METRIC_MAX_AHEAD_S:
                return f"The parameter {where}.Timestamp must specify a time no more than two weeks in the past and two hours in the future."
    return None


# === The front ===


class ConnectionReset(Exception):
    """Raised in a handler after it reset its connection on purpose."""


class FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def handle(self):
        try:
            super().handle()
        except (ConnectionReset, OSError, ValueError):
            pass

    def do_GET(self):
        self.serve()

    def do_PUT(self):
        self.serve()

    def do_POST(self):
        self.serve()

    def do_DELETE(self):
        self.serve()

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def service_and_operation(self, body):
        if self.path.startswith(CBOR_PREFIX):
            return "monitoring", self.path[len(CBOR_PREFIX):].split("?")[0]
        if self.path.startswith("/latest/"):
            return "imds", self.path
        auth = self.headers.get("Authorization", "")
        service = "unknown"
        if "Credential=" in auth:
            scope = auth.split("Credential=")[1].split(",")[0].split("/")
            if len(scope) >= 4:
                service = scope[3]
        target = self.headers.get("X-Amz-Target")
        if target:
            return service, target.split(".")[-1]
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", ["?"])[0]
        return service, action

    def serve(self):
        stack = self.server.stack
        body = self.read_body()
        service, operation = self.service_and_operation(body)
        stack.stats.bump(stack.stats.requests, f"{service}.{operation}")
        delay = stack.faults.latency_for(service)
        if delay:
            time.sleep(delay)
        fault = stack.faults.take(service)
        if fault:
            stack.stats.bump(stack.stats.faults, f"{service}.{fault}")
            self.serve_fault(fault, service)
            return
        try:
            if service == "monitoring" and self.path.startswith(CBOR_PREFIX):
                self.serve_cbor(operation, body)
            else:
                self.serve_moto(service, operation, body)
        except ConnectionReset:
            raise
        except Exception as error:  # the front must answer, whatever moto raised
            traceback.print_exc(file=sys.stderr)
            self.reply_error(service, 500, "InternalFailure", f"{type(error).__name__}: {error}")

    def serve_moto(self, service, operation, body):
        if service == "logs" and operation == "PutLogEvents":
            problem = check_put_log_events(json.loads(body or b"{}"))
            if problem:
                self.reject(service, operation, problem)
                return
        status, headers, payload = self.server.stack.call_moto(self.command, self.path, dict(self.headers), body)
        if self.path.startswith("/latest/api/token") and status == 200:
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "21600")
            headers["X-aws-ec2-metadata-token-ttl-seconds"] = ttl
        self.reply(status, headers, payload)

    def serve_cbor(self, operation, body):
        wire_bytes = len(body)
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        request = cbor2.loads(body) if body else {}
        if operation == "PutMetricData":
            problem = check_put_metric_data(request, wire_bytes)
            if problem:
                self.reject("monitoring", operation, problem, code="InvalidParameterValue")
                return
        headers = {
            "Host": self.headers.get("Host", "127.0.0.1"),
            "Authorization": self.headers.get("Authorization", ""),
            "X-Amz-Target": f"{CLOUDWATCH_TARGET}.{operation}",
            "Content-Type": "application/x-amz-json-1.0",
        }
        status, moto_headers, payload = self.server.stack.call_moto(
            "POST", "/", headers, json.dumps(cbor_to_json_value(request)).encode()
        )
        reply = json.loads(payload) if payload.strip() else {}
        if status >= 300:
            code = str(reply.get("__type", "InternalFailure")).split("#")[-1]
            message = reply.get("message") or reply.get("Message") or ""
            encoded = cbor_error(code, message)
        else:
            shape = CLOUDWATCH_MODEL.operation_model(operation).output_shape
            encoded = cbor2.dumps(json_to_cbor_value(shape, reply) if shape else {})
        headers = {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"}
        for name in ("x-amzn-requestid", "x-amzn-query-error"):
            if name in moto_headers:
                headers[name] = moto_headers[name]
        self.reply(status, headers, encoded)

    def reject(self, service, operation, message, code="InvalidParameterException"):
        self.server.stack.stats.bump(self.server.stack.stats.rejected, f"{service}.{operation}: {message}")
        self.reply_error(service, 400, code, message)

    def serve_fault(self, fault, service):
        if fault == "reset":
            # SO_LINGER with a zero timeout makes close() send a TCP RST.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            raise ConnectionReset()
        if fault == "throttle":
            code = "Throttling" if service in ("monitoring", "sns") else "ThrottlingException"
            self.reply_error(service, 400, code, "Rate exceeded")
        else:
            self.reply_error(service, 500, "InternalFailure", "injected server error")

    def reply_error(self, service, status, code, message):
        """An error in the protocol the caller speaks."""
        side = "Sender" if status < 500 else "Receiver"
        if self.path.startswith(CBOR_PREFIX):
            # CloudWatch is query-compatible: the SDK takes the code from this header.
            headers = {
                "Content-Type": "application/cbor",
                "smithy-protocol": "rpc-v2-cbor",
                "x-amzn-query-error": f"{code};{side}",
            }
            self.reply(status, headers, cbor_error(code, message))
        elif self.headers.get("X-Amz-Target"):
            headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code}
            self.reply(status, headers, json.dumps({"__type": code, "message": message}).encode())
        else:
            xml = (
                f"<ErrorResponse><Error><Type>{side}</Type><Code>{code}</Code>"
                f"<Message>{message}</Message></Error><RequestId>klaxon-stack</RequestId></ErrorResponse>"
            )
            self.reply(status, {"Content-Type": "text/xml"}, xml.encode())

    def reply(self, status, headers, payload):
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class FrontServer(ThreadingHTTPServer):
    """The HTTP server of the front; can go down (refusing connections) and come back on its port."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, stack):
        super().__init__(("127.0.0.1", 0), FrontHandler)
        self.stack = stack
        self.open_connections = set()
        self.connections_lock = threading.Lock()
        self.thread = None

    def get_request(self):
        connection, address = super().get_request()
        with self.connections_lock:
            self.open_connections.add(connection)
        return connection, address

    def shutdown_request(self, request):
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def start(self):
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def go_down(self):
        """An outage: the port refuses connections and open ones are cut."""
        self.shutdown()
        self.socket.close()
        with self.connections_lock:
            for connection in list(self.open_connections):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def come_up(self):
        self.socket = socket.socket(self.address_family, self.socket_type)
        self.server_bind()
        self.server_activate()
        self.start()


class Stack:
    """moto in process, the front before it, and what the tests asked for."""

    def __init__(self):
        self.moto = Client(DomainDispatcherApplication(create_backend_app))
        self.moto_lock = threading.Lock()
        self.stats = Stats()
        self.faults = Faults()
        self.front = FrontServer(self)
        self.down = False

    @property
    def endpoint(self):
        host, port = self.front.server_address[:2]
        return f"http://{host}:{port}"

    def call_moto(self, method, path, headers, body):
        headers = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "content-encoding")}
        # moto's backends are not all safe under concurrent mutation.
        with self.moto_lock:
            response = self.moto.open(path, method=method, headers=headers, data=body)
        return response.status_code, dict(response.headers), response.get_data()

    def outage(self, down):
        if down and not self.down:
            self.front.go_down()
        elif not down and self.down:
            self.front.come_up()
        self.down = down


class Control:
    """Commands read from standard input, one JSON object a line.

    {"cmd": "fault", "service": "logs", "kind": "throttle|error|reset", "count": 3}  (or "fraction": 0.5)
    {"cmd": "latency", "service": "*", "ms": 200}
    {"cmd": "clear"}                        clear faults and latency
    {"cmd": "outage", "down": true}         refuse connections; false to recover
    {"cmd": "stats"}                        requests, rejections and faults so far
    """

    def __init__(self, stack):
        self.stack = stack

    def run(self, command):
        name = command.get("cmd")
        if name == "fault":
            self.stack.faults.add(command["service"], command["kind"], command.get("count"), command.get("fraction"))
        elif name == "latency":
            self.stack.faults.set_latency(command["service"], command["ms"])
        elif name == "clear":
            self.stack.faults.clear()
        elif name == "outage":
            self.stack.outage(bool(command["down"]))
        elif name == "stats":
            return self.stack.stats.snapshot()
        else:
            raise ValueError(f"unknown command {name!r}")
        return {}


def main():
    stack = Stack()
    stack.front.start()
    print(json.dumps({"endpoint": stack.endpoint}), flush=True)
    control = Control(stack)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = {"ok": True, **control.run(json.loads(line))}
        except Exception as error:
            reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
