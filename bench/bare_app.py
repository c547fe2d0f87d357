"""The baseline for the upload benchmark: a bare FastAPI endpoint that only writes the
uploaded file to disk, the way the usual tutorials do (UploadFile, then copy)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import anyio
from fastapi import FastAPI, UploadFile
from fastapi.responses import JSONResponse

TARGET = Path(os.environ["BARE_UPLOAD_DIR"])  # set by bench.servers.bare_server
TARGET.mkdir(parents=True, exist_ok=True)
app = FastAPI()


@app.post("/upload")
async def upload(file: UploadFile) -> JSONResponse:
    path = TARGET / uuid.uuid4().hex
    async with await anyio.open_file(path, "wb") as handle:
        while chunk := await file.read(1024 * 1024):
            await handle.write(chunk)
    return JSONResponse({"task_id": path.name}, status_code=202)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
