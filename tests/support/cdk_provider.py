"""CDK's Provider framework, its real onEvent code, in front of a Python handler under test.

The framework's runtime (``framework.js``, ``cfn-response.js``, ``consts.js``, ``util.js``) is
taken from the pinned aws-cdk-lib (the jsii tarball the Python package installs) and run by
Node. Only its ``outbound.js``, the module that calls AWS, is replaced: ``invokeFunction``
posts the payload to this process, which runs the handler as Lambda's Python runtime would
(its return value as the payload, or the runtime's error payload and ``FunctionError`` when
it raises), and ``httpRequest`` PUTs the framework's answer to the request's ResponseURL (a
local receiver standing in for CloudFormation's pre-signed URL). What CloudFormation would get
is then exactly what the pinned framework makes of the handler's result.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import threading
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aws_cdk

_RUNTIME = "package/custom-resources/lib/provider-framework/runtime/"
_KEEP = ("framework.js", "cfn-response.js", "consts.js", "util.js")
HANDLER_ARN = "arn:aws:lambda:eu-central-2:123456789012:function:handler-under-test"

_OUTBOUND = """\
"use strict";
// Test stand-in for the framework's AWS calls (tests/support/cdk_provider.py).
const http = require("http");
function send(options, body) {
  return new Promise((resolve, reject) => {
    const request = http.request(options, (response) => {
      const chunks = [];
      response.on("data", (c) => chunks.push(c));
      response.on("end", () => response.statusCode >= 400
        ? reject(new Error(`HTTP ${response.statusCode}`))
        : resolve(Buffer.concat(chunks)));
    });
    request.on("error", reject);
    request.write(body);
    request.end();
  });
}
exports.invokeFunction = async (req) => {
  const reply = JSON.parse((await send({
    host: "127.0.0.1", port: Number(process.env.GOVDR_INVOKE_PORT), path: "/invoke",
    method: "POST",
    headers: {"content-type": "application/json", "content-length": Buffer.byteLength(req.Payload)},
  }, req.Payload)).toString());
  return {Payload: Buffer.from(JSON.stringify(reply.payload)), FunctionError: reply.error};
};
exports.httpRequest = async (options, body) => {
  await send({...options, host: "127.0.0.1", port: Number(process.env.GOVDR_RESPONSE_PORT)}, body);
};
exports.startExecution = async () => { throw new Error("no waiter state machine in tests"); };
"""
_DRIVER = """\
"use strict";
const event = JSON.parse(require("fs").readFileSync(0, "utf8"));
require("./framework").onEvent(event).then(
  () => process.exit(0),
  (e) => { console.error(e && e.stack || e); process.exit(1); },
);
"""


def _tarball() -> Path:
    jsii = Path(aws_cdk.__file__).parent / "_jsii"
    [tarball] = sorted(jsii.glob("aws-cdk-lib@*.jsii.tgz"))
    return tarball


def install(directory: Path) -> Path:
    """The framework's runtime from the pinned aws-cdk-lib, with the test outbound, in
    ``directory``; returns the driver script."""
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(_tarball()) as archive:
        for name in _KEEP:
            member = archive.extractfile(_RUNTIME + name)
            assert member is not None, f"aws-cdk-lib has no {_RUNTIME}{name}"
            (directory / name).write_bytes(member.read())
    (directory / "outbound.js").write_text(_OUTBOUND)
    driver = directory / "driver.js"
    driver.write_text(_DRIVER)
    return driver


class _Invoke(BaseHTTPRequestHandler):
    handler: ClassVar[Callable[[dict[str, Any]], Any]]

    def do_POST(self) -> None:
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        reply: dict[str, Any]
        try:
            reply = {"payload": type(self).handler(event)}
        except Exception as exc:  # the Python runtime's error payload
            reply = {
                "payload": {
                    "errorMessage": str(exc),
                    "errorType": type(exc).__name__,
                    "stackTrace": traceback.format_tb(exc.__traceback__),
                },
                "error": "Unhandled",
            }
        body = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class ProviderFramework:
    """Runs requests through the framework; each answer goes to the event's ResponseURL."""

    def __init__(self, directory: Path) -> None:
        self.driver = install(directory)
        node = shutil.which("node")
        assert node, "Node.js is needed to run CDK's Provider framework (make install)"
        self.node = node

    def run(self, event: dict[str, Any], handler: Callable[[dict[str, Any]], Any]) -> None:
        """The framework's onEvent for ``event``, invoking ``handler`` in this process."""
        _Invoke.handler = staticmethod(handler)  # type: ignore[assignment]
        server = HTTPServer(("127.0.0.1", 0), _Invoke)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            port = urlsplit(str(event["ResponseURL"])).port
            done = subprocess.run(
                [self.node, str(self.driver)],
                input=json.dumps(event),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env={
                    "PATH": str(Path(self.node).parent),
                    "USER_ON_EVENT_FUNCTION_ARN": HANDLER_ARN,
                    "GOVDR_INVOKE_PORT": str(server.server_port),
                    "GOVDR_RESPONSE_PORT": str(port),
                },
            )
        finally:
            server.shutdown()
            server.server_close()
        assert done.returncode == 0, f"the framework failed:\n{done.stderr}\n{done.stdout}"


_FRAMEWORK: ProviderFramework | None = None


def answer(event: dict[str, Any], handler: Callable[[dict[str, Any]], Any]) -> None:
    """Run ``event`` through the framework (installed once per test session) in front of
    ``handler``; the answer goes to the event's ResponseURL."""
    global _FRAMEWORK
    if _FRAMEWORK is None:
        import tempfile

        _FRAMEWORK = ProviderFramework(Path(tempfile.mkdtemp(prefix="cdk-provider-")))
    _FRAMEWORK.run(event, handler)


def reason_of(body: dict[str, Any]) -> str:
    """The handler's own reason in a FAILED answer: the framework sends ``Error: <reason>``,
    a blank line, ``Logs: /aws/lambda/<handler>`` and its own call stack."""
    text = str(body["Reason"])
    if body.get("Status") != "FAILED":
        return text
    head, logs, _ = text.partition("\n\nLogs: /aws/lambda/")
    assert logs, f"not the framework's failure reason: {text!r}"
    return head.removeprefix("Error: ")


def stack_deleting(_stack_id: str) -> str:
    """The status of a stack being deleted, for a handler that reads its stack's status."""
    return "DELETE_IN_PROGRESS"
