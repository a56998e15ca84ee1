"""Fixtures of the checkpoint tests."""

import pytest


@pytest.fixture
def admin_token(admin_user, token_for):
    return token_for(admin_user)


@pytest.fixture
def fast_retries(settings):
    settings.ESD_DOWNLOAD_RETRY_DELAY = 0.01
    settings.ESD_DOWNLOAD_RETRIES = 2
    return settings
