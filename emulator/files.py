"""In-memory files: uploads, and the files that URL and raw-text run inputs become."""

from __future__ import annotations

import hashlib
import hmac
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from extendq.emulator.extraction import pdf_text
from extendq.emulator.wire import iso, new_id

_EXTENSIONS = {
    "pdf": "PDF",
    "csv": "CSV",
    "txt": "TXT",
    "text": "TXT",
    "md": "TXT",
    "png": "IMG",
    "jpg": "IMG",
    "jpeg": "IMG",
    "gif": "IMG",
    "tif": "IMG",
    "tiff": "IMG",
    "webp": "IMG",
    "heic": "IMG",
    "docx": "DOCX",
    "doc": "DOCX",
    "xlsx": "EXCEL",
    "xls": "EXCEL",
    "xml": "XML",
    "html": "HTML",
    "htm": "HTML",
}
_MAGIC = ((b"%PDF", "PDF"), (b"\x89PNG", "IMG"), (b"\xff\xd8\xff", "IMG"), (b"GIF8", "IMG"), (b"<?xml", "XML"))


@dataclass(slots=True)
class FileRecord:
    """A file known to the emulator; `text` is what extraction reads."""

    id: str
    name: str
    type: str | None
    text: str
    created_at: float
    page_count: int | None = None
    content: bytes = b""
    summary: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.summary = {
            "object": "file",
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "parentFileId": None,
            "metadata": {"pageCount": self.page_count},
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.created_at),
        }

    @property
    def pages(self) -> int:
        """Pages billed for this file (at least one)."""
        return max(self.page_count or 1, 1)


def sniff_type(name: str, content: bytes = b"") -> str | None:
    """Extend's FileType from magic bytes, else the extension; None when unknown."""
    for magic, kind in _MAGIC:
        if content.startswith(magic):
            return kind
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    return "TXT" if content and _is_text(content) else None


def _is_text(content: bytes) -> bool:
    try:
        content[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def name_from_url(url: str) -> str:
    """The file name of a URL input: the last path segment, as Extend defaults it."""
    path = unquote(urlsplit(url).path)
    return posixpath.basename(path.rstrip("/")) or "file"


def read_upload(name: str, content: bytes) -> tuple[str | None, str, int | None]:
    """Type, text and page count of uploaded bytes (the text layer for PDFs)."""
    kind = sniff_type(name, content)
    if kind == "PDF":
        text, pages = pdf_text(content)
        return kind, text, pages
    if kind in ("TXT", "CSV", "XML", "HTML"):
        return kind, content.decode("utf-8", errors="replace"), None
    return kind, "", None


class FileStore:
    """Every file by id, in creation order."""

    def __init__(self) -> None:
        self._files: dict[str, FileRecord] = {}

    def add(self, *, name: str, type_: str | None, text: str, at: float, **extra: Any) -> FileRecord:
        """Register a new file."""
        record = FileRecord(id=new_id("file_"), name=name, type=type_, text=text, created_at=at, **extra)
        self._files[record.id] = record
        return record

    def get(self, file_id: str) -> FileRecord | None:
        """The file, or None when unknown."""
        return self._files.get(file_id)

    def delete(self, file_id: str) -> bool:
        """Forget a file; runs that used it keep their copy."""
        return self._files.pop(file_id, None) is not None

    def __iter__(self) -> Iterator[FileRecord]:
        return iter(list(self._files.values()))

    def __len__(self) -> int:
        return len(self._files)

    def clear(self) -> None:
        """Forget every file."""
        self._files.clear()


PRESIGN_TTL_S = 900


def presigned_url(base_url: str, file_id: str, at: float, key: bytes) -> str:
    """A download URL for a file, served by the emulator without auth, valid 15 minutes."""
    expires = int(at + PRESIGN_TTL_S)
    signature = _file_signature(key, file_id, expires)
    return f"{base_url.rstrip('/')}/_emulator/files/{file_id}/content?expires={expires}&signature={signature}"


def check_presigned(file_id: str, expires: str, signature: str, at: float, key: bytes) -> bool:
    """True when a presigned URL's signature matches and it has not expired."""
    if not expires.isdigit() or int(expires) < at:
        return False
    return hmac.compare_digest(signature, _file_signature(key, file_id, int(expires)))


def _file_signature(key: bytes, file_id: str, expires: int) -> str:
    return hmac.new(key, f"{file_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]
