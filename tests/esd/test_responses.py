from datetime import UTC, datetime, timedelta, timezone

from esd.responses import envelope, esd_response, esd_time


def test_timestamps_always_have_six_microsecond_digits():
    # str(datetime) drops the microseconds when they are zero; the WebUI's strptime would then fail.
    assert esd_time(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2024-01-02 03:04:05.000000"
    assert esd_time(datetime(2024, 1, 2, 3, 4, 5, 120)) == "2024-01-02 03:04:05.000120"
    parsed = datetime.strptime(esd_time(datetime(2024, 1, 2, tzinfo=UTC)), "%Y-%m-%d %H:%M:%S.%f")
    assert parsed == datetime(2024, 1, 2)


def test_timestamps_are_utc_without_a_zone():
    tokyo = timezone(timedelta(hours=9))
    assert esd_time(datetime(2024, 1, 2, 9, 0, 0, tzinfo=tokyo)) == "2024-01-02 00:00:00.000000"
    assert esd_time(None) is None


def test_envelope_omits_empty_data_and_defaults_the_message():
    assert envelope(200) == {"statusCode": 200, "message": "OK"}
    assert envelope(201, data={}) == {"statusCode": 201, "message": "Created"}
    assert envelope(202, "queued", {"id": "x"}) == {"statusCode": 202, "message": "queued", "data": {"id": "x"}}
    assert envelope(400, "bad") == {"statusCode": 400, "message": "bad"}


def test_204_has_no_body():
    response = esd_response(204)
    assert response.status_code == 204
    assert response.data is None
