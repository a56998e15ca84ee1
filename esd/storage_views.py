"""The local store's stand-in for presigned S3 URLs: signed, expiring, single-purpose URLs that accept a PUT of
an object or a multipart part (streamed to disk in chunks, answered with an S3-style ETag) or serve a GET."""

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from .signals import upload_refused
from .storage import LocalStorage, StorageError, StorageFull, get_storage


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
        # S3 caps a PUT at 5 GiB; the local store takes a whole checkpoint in one (a 7 GB SDXL file with
        # `parts_number: 1`, as the README's recipe uploads it), or what the URL itself allows (a job's payload).
        limit = min(claims.get("max") or settings.ESD_MAX_CHECKPOINT_BYTES, settings.ESD_MAX_CHECKPOINT_BYTES)
        try:
            length = int(request.headers.get("Content-Length") or 0)
        except ValueError:
            return _refused(400, "Content-Length is not a number")
        try:
            if length > limit:
                raise StorageError(f"body of {length} bytes is larger than the {limit}-byte limit")
            storage.check_room(claims["key"], length)
            if claims["op"] == "part":
                etag = storage.write_part(claims["key"], claims["upload"], claims["part"], request, limit)
            else:
                etag = storage.write_object(claims["key"], request, limit)
        except StorageError as exc:
            status = 507 if isinstance(exc, StorageFull) else 413 if length > limit else 400
            if status != 400:  # it cannot fit: what it was for fails at once rather than wait for a completion
                upload_refused.send(sender=type(self), key=claims["key"], reason=str(exc))
            return _refused(status, str(exc))
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
