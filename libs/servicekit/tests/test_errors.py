"""The one error table: every domain error kind has exactly the status code the architecture names."""

import pytest
from servicekit import errors


@pytest.mark.parametrize(
    ("error_type", "code"),
    [
        (errors.InvalidArgument, "INVALID_ARGUMENT"),
        (errors.NotFound, "NOT_FOUND"),
        (errors.AlreadyExists, "ALREADY_EXISTS"),
        (errors.FailedPrecondition, "FAILED_PRECONDITION"),
        (errors.PermissionDenied, "PERMISSION_DENIED"),
        (errors.Unauthenticated, "UNAUTHENTICATED"),
        (errors.ConcurrencyConflict, "ABORTED"),
        (errors.ResourceExhausted, "RESOURCE_EXHAUSTED"),
        (errors.DataLoss, "DATA_LOSS"),
    ],
)
def test_each_error_kind_maps_to_its_status(error_type: type[errors.DomainError], code: str) -> None:
    error = error_type("what went wrong and what to do")
    assert errors.status_name(error) == code
    assert error.message == "what went wrong and what to do"
    assert str(error) == error.message


def test_table_covers_every_kind_and_nothing_else() -> None:
    kinds = {cls for cls in errors.DomainError.__subclasses__()}
    assert set(errors.STATUS_BY_ERROR) == kinds


def test_domain_subclass_inherits_its_parents_code() -> None:
    class CaseNotFound(errors.NotFound):
        pass

    assert errors.status_name(CaseNotFound("case 'c-1' does not exist")) == "NOT_FOUND"


def test_bare_domain_error_is_internal_because_its_kind_was_not_decided() -> None:
    assert errors.status_name(errors.DomainError("?")) == "INTERNAL"


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        errors.STATUS_BY_ERROR[errors.DomainError] = "OK"  # type: ignore[index]


def test_errors_module_imports_only_the_standard_library() -> None:
    import ast
    import sys
    from pathlib import Path

    tree = ast.parse(Path(errors.__file__).read_text())
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
