"""CloudStack API errors (ApiErrorCode / CSExceptionErrorCode values)."""
from __future__ import annotations

PARAM_ERROR = 431
MALFORMED_PARAMETER_ERROR = 430
UNAUTHORIZED = 401
INTERNAL_ERROR = 530
ACCOUNT_ERROR = 531
INSUFFICIENT_CAPACITY_ERROR = 533
RESOURCE_UNAVAILABLE_ERROR = 534
RESOURCE_IN_USE_ERROR = 536
NETWORK_RULE_CONFLICT_ERROR = 537
API_LIMIT_EXCEED = 429

CS_INVALID_PARAMETER = 4350
CS_CLOUD_RUNTIME = 4250
CS_SERVER_API = 9999
CS_INSUFFICIENT_CAPACITY = 4325
CS_INSUFFICIENT_ADDRESS = 4320
CS_NETWORK_RULE_CONFLICT = 4360
CS_PERMISSION_DENIED = 4365
CS_REQUEST_LIMIT = 4545
CS_RESOURCE_IN_USE = 4375

_DEFAULT_CS = {
    431: CS_INVALID_PARAMETER,
    430: CS_SERVER_API,
    530: CS_CLOUD_RUNTIME,
    531: CS_PERMISSION_DENIED,
    533: CS_INSUFFICIENT_CAPACITY,
    536: CS_RESOURCE_IN_USE,
    537: CS_NETWORK_RULE_CONFLICT,
    429: CS_REQUEST_LIMIT,
}


class ApiError(Exception):
    def __init__(self, code: int, text: str, cserrorcode: int | None = None):
        super().__init__(text)
        self.code = code
        self.text = text
        self.cserrorcode = cserrorcode if cserrorcode is not None else _DEFAULT_CS.get(code, CS_SERVER_API)


def param_error(text: str) -> ApiError:
    return ApiError(PARAM_ERROR, text, CS_INVALID_PARAMETER)


def missing_param(cmd: str, param: str) -> ApiError:
    return ApiError(PARAM_ERROR, f"Unable to execute API command {cmd.lower()} due to missing parameter {param}",
                    CS_INVALID_PARAMETER)


def invalid_value(cmd: str, param: str, value: str) -> ApiError:
    return ApiError(PARAM_ERROR, f"Unable to execute API command {cmd.lower()} due to invalid value {value} "
                                 f"for parameter {param}", CS_INVALID_PARAMETER)


def invalid_uuid(cmd: str, param: str, value: str) -> ApiError:
    # ParamProcessWorker.translateUuidToInternalId failure text
    return ApiError(PARAM_ERROR,
                    f"Unable to execute API command {cmd.lower()} due to invalid value. Invalid parameter {param} "
                    f"value={value} due to incorrect long value format, or entity does not exist or due to "
                    f"incorrect parameter annotation for the field in api cmd class.", CS_INVALID_PARAMETER)
