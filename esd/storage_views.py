"""The local store's stand-in for presigned S3 URLs: signed, expiring, single-purpose URLs that accept a PUT of
an object or a multipart part (streamed to disk in chunks, answered with an S3-style ETag) or serve a GET."""

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from .storage import LocalStorage, StorageError, StorageFull, get_storage

# One PUT never exceeds S3's part limit (5 GiB) nor the checkpoint cap.
MAX_PART_BYTES = 5 * 1024**3


def _refused(status: int, message: str) -> JsonResponse:
    return JsonResponse({"message": message}, status=status)


@method_decorator(csrf_exempt, name="dispatch")  # authorised by the URL's signature, not by a session
class LocalStorageObjectView(View):
    http_method_names = ["get", "put", "head"]

    def _claims(self, token: str, *ops: str) -> dict | JsonResponse:
        storage = get_storage()
        if not isinstance(storage, LocalStorage):
            return _refused(404, "the local store is not in use")
        try:
            claims = storage.verify(token)
        except StorageError as exc:
            return _refused(403, str(exc))
        if claims.get("op") not in ops:
            return _refused(403, f"this URL does not allow {self.request.method}")
        return claims

    def put(self, request: HttpRequest, token: str) -> HttpResponse:
        claims = self._claims(token, "put", "part")
        if isinstance(claims, JsonResponse):
            return claims
        storage = get_storage()
        assert isinstance(storage, LocalStorage)
        limit = min(MAX_PART_BYTES, settings.ESD_MAX_CHECKPOINT_BYTES)
        try:
            length = int(request.headers.get("Content-Length") or 0)
        except ValueError:
            return _refused(400, "Content-Length is not a number")
        if length > limit:
            return _refused(413, f"body of {length} bytes is larger than the {limit}-byte limit")
        try:
            if claims["op"] == "part":
                etag = storage.write_part(claims["key"], claims["upload"], claims["part"], request, limit)
            else:
                etag = storage.write_object(claims["key"], request, limit)
        except StorageFull as exc:
            return _refused(507, str(exc))
        except StorageError as exc:
            return _refused(400, str(exc))
        response = HttpResponse(status=200)
        response["ETag"] = etag
        return response

    def get(self, request: HttpRequest, token: str) -> HttpResponseBase:
        claims = self._claims(token, "get")
        if isinstance(claims, JsonResponse):
            return claims
        storage = get_storage()
        try:
            handle = storage.open(claims["key"])
        except StorageError:
            return _refused(404, "no such object")
        return FileResponse(handle, as_attachment=False, filename=claims["key"].rsplit("/", 1)[-1])
