"""Lawtrail's Python client SDK and the `lawtrail` command line (incl. the collection-station agent).

- `CaseClient`, `MediaClient` (`lawtrail_client.client`): the generated stubs on an authenticated channel
  with default deadlines, retries of UNAVAILABLE and typed errors (`lawtrail_client.errors`).
- `upload_file` (`lawtrail_client.upload`): resumable upload of one recording, confirmed by its SHA-256.
- `lawtrail_client.verify`: offline checks of ledger entries and checkpoints (`lawtrail verify`).
- `lawtrail_client.station`: the collection-station agent behind `lawtrail station …`.
"""

from lawtrail_client.channel import Tls, open_channel
from lawtrail_client.client import AccessClient, CaseClient, MediaClient
from lawtrail_client.errors import LawtrailError
from lawtrail_client.upload import UploadResult, upload_file

__all__ = [
    "AccessClient",
    "CaseClient",
    "LawtrailError",
    "MediaClient",
    "Tls",
    "UploadResult",
    "open_channel",
    "upload_file",
]
