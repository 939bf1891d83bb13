"""Every GraphQL document the Flash backend sends is valid against Flash's real public schema."""

from __future__ import annotations

import pytest
from graphql import OperationDefinitionNode, build_schema, parse, validate

from terminal.adapters.backends import flash_documents
from terminal.sandbox.flash_schema import schema_sdl


@pytest.fixture(scope="module")
def schema():
    return build_schema(schema_sdl())  # the one copy of Flash's schema: the sandbox's


def test_all_documents_lists_every_constant():
    # A document added to the module but not to ALL_DOCUMENTS would escape validation.
    constants = {
        name: value
        for name, value in vars(flash_documents).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, str)
        and value.lstrip().startswith(("query", "mutation", "subscription"))
    }
    assert constants == flash_documents.ALL_DOCUMENTS


@pytest.mark.parametrize("count", [1, 2, 7, flash_documents.STATUS_BATCH_MAX])
def test_status_batches_are_valid_and_fit_flash_complexity(schema, count):
    # Property: a batch of any allowed size is valid against Flash's schema, names one operation,
    # and costs at most Flash's 200 complexity points (plugins/complexity.ts).
    from terminal.sandbox.flash_http import prepare_document

    text = flash_documents.ln_invoice_payment_status_batch(count)
    assert validate(schema, parse(text)) == []
    assert prepare_document(text).complexity <= 200
    with pytest.raises(ValueError):
        flash_documents.ln_invoice_payment_status_batch(flash_documents.STATUS_BATCH_MAX + 1)


def test_every_document_fits_flash_complexity():
    from terminal.sandbox.flash_http import prepare_document

    for name, text in flash_documents.ALL_DOCUMENTS.items():
        prepared = prepare_document(text)
        assert prepared.document is not None, name
        assert prepared.complexity <= 200, (name, prepared.complexity)


@pytest.mark.parametrize("name", sorted(flash_documents.ALL_DOCUMENTS))
def test_document_is_valid_against_flash_schema(schema, name):
    document = parse(flash_documents.ALL_DOCUMENTS[name])
    errors = validate(schema, document)
    assert errors == [], f"{name}: {[e.message for e in errors]}"


@pytest.mark.parametrize("name", sorted(flash_documents.ALL_DOCUMENTS))
def test_document_has_one_named_operation(name):
    # One named operation per document: the server's logs and rate limits key on the name.
    document = parse(flash_documents.ALL_DOCUMENTS[name])
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    assert len(operations) == 1
    assert operations[0].name is not None


def test_validation_catches_a_wrong_field(schema):
    # Guard that the check above can fail: a misspelt field is rejected by the schema.
    bad = flash_documents.LN_INVOICE_PAYMENT_STATUS.replace("status\n", "state\n", 1)
    assert validate(schema, parse(bad)) != []


def test_subscription_is_a_subscription_and_queries_are_queries():
    def kind(doc: str) -> str:
        op = next(d for d in parse(doc).definitions if isinstance(d, OperationDefinitionNode))
        return op.operation.value

    assert kind(flash_documents.LN_INVOICE_PAYMENT_STATUS_SUBSCRIPTION) == "subscription"
    assert kind(flash_documents.LN_INVOICE_PAYMENT_STATUS) == "query"
    assert kind(flash_documents.LN_USD_INVOICE_CREATE) == "mutation"
