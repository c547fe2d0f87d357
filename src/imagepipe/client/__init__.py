"""The command-line client: ``imagepipe upload``, ``status`` and ``sign``.

It speaks only the HTTP API of docs/api-contract.md, so it works against any
deployment. Uploads are streamed from disk (never read whole into memory) so the
progress bar counts bytes actually handed to the connection.

Exit codes: 0 when every file was accepted (and, with ``--wait``, every task
succeeded); 1 otherwise, or when ``status`` cannot show the task; 2 for usage errors.

``api`` makes the calls (and asks again on 429/503), ``errors`` says what a failed
one was, ``wire`` reads and writes the bodies it streams, ``files`` finds what to
upload, ``report`` prints, ``commands`` are the click commands ``cli`` adds.
"""

from __future__ import annotations

from imagepipe.client.api import UPLOAD_ATTEMPTS, Api
from imagepipe.client.bodies import TaskBody
from imagepipe.client.commands import DEFAULT_URL, sign, status, upload
from imagepipe.client.errors import ServiceError
from imagepipe.client.files import collect_files

__all__ = [
    "DEFAULT_URL",
    "UPLOAD_ATTEMPTS",
    "Api",
    "ServiceError",
    "TaskBody",
    "collect_files",
    "sign",
    "status",
    "upload",
]
