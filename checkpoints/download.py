"""Fetching a checkpoint by URL: its file name before it is fetched, and the errors a download run tells apart.
The HTTP itself (which addresses may be reached, redirects, TLS) is esd.safe_http's; sizes are capped by
ESD_MAX_CHECKPOINT_BYTES, from Content-Length and while streaming (checkpoints.execution)."""

import re
from urllib.parse import urljoin, urlsplit

from esd.safe_http import REDIRECTS, disposition_filename, open_url, url_filename

CIVITAI_STYLE = re.compile(r"/api/download/models/\d+/?$")


# A download's failures, as a run tells them apart: refused (esd.safe_http.RequestRefused, permanent), transient
# (esd.safe_http.TransientRequestError, retried), and this one.
class DownloadInterrupted(Exception):
    """The process is stopping (esd.shutdown): the download ends here, unfinished, and resumes at a start."""


def resolve_filename(url: str) -> str:
    """The file name a URL will be stored under, known before downloading (ESD checks names up front).

    Civitai-style `/api/download/models/N` URLs only tell their name through their redirect (or
    Content-Disposition), so they are asked, without following it; others are named by their path.
    """
    if not CIVITAI_STYLE.search(urlsplit(url).path):
        return url_filename(url)
    download = open_url(url, follow_redirects=False, timeout=10.0)
    try:
        response = download.response
        if response.status in REDIRECTS and response.headers.get("Location"):
            return disposition_filename(response.headers.get("Content-Disposition", "")) or url_filename(
                urljoin(url, response.headers["Location"])
            )
        return download.filename()
    finally:
        download.close()
