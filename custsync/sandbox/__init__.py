"""Local stand-ins for the partner APIs (minted, vendor), with fault injection.

Used by the test suite, the demo and benchmarks. Requests are checked with rules
written from the seeds, never with custsync's own schemas.
"""

from custsync.sandbox.client import SandboxClient, SandboxError
from custsync.sandbox.server import Sandbox

__all__ = ["Sandbox", "SandboxClient", "SandboxError"]
