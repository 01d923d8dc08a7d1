"""Catalog tools against a real driver: listing, describing and previewing, filtered by policy."""

from __future__ import annotations

import pytest
from mcp import Client

from tests.helpers import ClientFactory, call, call_error

pytestmark = [pytest.mark.anyio, pytest.mark.spark, pytest.mark.any_era]


async def test_list_catalogs_shows_the_session_catalog(alice: Client) -> None:
    reply = await call(alice, "list_catalogs")
    assert "spark_catalog" in reply["catalogs"]
    assert reply["current_catalog"] == "spark_catalog"


async def test_list_namespaces_shows_only_namespaces_the_caller_may_read_something_in(alice: Client) -> None:
    # alice reads tpch.* and sales.*, and her role denies hr.*: hr and default hold nothing for her.
    reply = await call(alice, "list_namespaces")
    assert reply["namespaces"] == ["sales", "tpch"]
    assert reply["hidden"] == 2
    text = (await alice.call_tool("list_namespaces", {})).content[0].text
    assert "hr" not in text.split() and "2 more not shown" in text


async def test_a_namespace_denied_whole_is_hidden_even_from_a_role_that_reads_everything(erin: Client) -> None:
    # erin reads "*" but her role denies hr.*: every other namespace shows, hr does not.
    reply = await call(erin, "list_namespaces")
    assert {"tpch", "sales", "default"} <= set(reply["namespaces"])
    assert "hr" not in reply["namespaces"]


async def test_list_tables_hides_tables_the_caller_may_not_read(alice: Client) -> None:
    reply = await call(alice, "list_tables", namespace="tpch")
    names = {t["name"] for t in reply["tables"]}
    assert {"tpch.lineitem", "tpch.orders", "tpch.nation"} <= names
    assert "tpch.secret_codes" not in names  # alice's role denies *.secret_*
    assert reply["hidden"] == 1


async def test_list_tables_of_a_denied_namespace_is_empty_but_says_how_many_are_hidden(alice: Client) -> None:
    reply = await call(alice, "list_tables", namespace="hr")
    assert reply["tables"] == []
    assert reply["hidden"] == 1


async def test_list_tables_filters_by_pattern(alice: Client) -> None:
    reply = await call(alice, "list_tables", namespace="tpch", pattern="part*")
    assert {t["name"] for t in reply["tables"]} == {"tpch.part", "tpch.partsupp"}


async def test_an_engineer_sees_the_secret_table_but_not_hr(erin: Client) -> None:
    tpch = await call(erin, "list_tables", namespace="tpch")
    assert "tpch.secret_codes" in {t["name"] for t in tpch["tables"]}
    hr = await call(erin, "list_tables", namespace="hr")
    assert hr["tables"] == [] and hr["hidden"] == 1


async def test_describe_table_gives_columns_types_nullability_provider_and_location(alice: Client) -> None:
    reply = await call(alice, "describe_table", table="tpch.orders")
    assert reply["table"] == "spark_catalog.tpch.orders"
    columns = {c["name"]: c for c in reply["columns"]}
    assert columns["o_orderkey"]["type"] == "bigint"
    assert columns["o_totalprice"]["type"].startswith("decimal(")
    assert isinstance(columns["o_orderdate"]["nullable"], bool)
    assert reply["provider"] == "parquet"
    assert reply["location"] and "orders.parquet" in reply["location"]
    assert reply["base_tables"] == ["spark_catalog.tpch.orders"]


@pytest.mark.parametrize(
    "name",
    ["tpch.nation", "spark_catalog.tpch.nation", "`tpch`.`nation`", "TPCH.NATION", "spark_catalog.`tpch`.nation"],
)
async def test_table_names_are_accepted_in_every_usual_form(alice: Client, name: str) -> None:
    reply = await call(alice, "describe_table", table=name)
    assert reply["table"] == "spark_catalog.tpch.nation"


async def test_describe_of_a_denied_table_is_refused_with_the_rule(alice: Client) -> None:
    text = await call_error(alice, "describe_table", table="hr.salaries")
    assert "policy_denied" in text and "hr.salaries" in text


async def test_describe_of_a_table_denied_inside_a_readable_namespace_is_refused(alice: Client) -> None:
    text = await call_error(alice, "describe_table", table="tpch.secret_codes")  # tpch.* readable, *.secret_* denied
    assert "policy_denied" in text


async def test_describe_of_a_missing_table_says_not_found(alice: Client) -> None:
    text = await call_error(alice, "describe_table", table="tpch.nope")
    assert "TABLE_OR_VIEW_NOT_FOUND" in text


@pytest.mark.parametrize("name", ["", "a.b.c.d", "tpch.nation; DROP TABLE x", "tpch..nation", "`unclosed"])
async def test_malformed_table_names_are_invalid_input(alice: Client, name: str) -> None:
    text = await call_error(alice, "describe_table", table=name)
    assert "invalid_input" in text


async def test_preview_table_returns_the_first_rows_with_exact_values(alice: Client) -> None:
    reply = await call(alice, "preview_table", table="sales.orders", limit=2)
    assert reply["row_count"] == 2
    assert reply["columns"][0] == {"name": "order_id", "type": "int"}
    assert reply["rows"][0][:2] == [1, "north"]


async def test_preview_of_a_denied_table_is_refused(alice: Client) -> None:
    text = await call_error(alice, "preview_table", table="tpch.secret_codes")
    assert "policy_denied" in text and "secret_" in text


async def test_a_principal_without_session_create_gets_a_clear_denial(connect: ClientFactory) -> None:
    async with connect("carol") as carol:
        text = await call_error(carol, "list_tables", namespace="tpch")
        assert "policy_denied" in text and "session.create" in text


async def test_catalog_replies_read_as_compact_text_not_json(alice: Client) -> None:
    described = await alice.call_tool("describe_table", {"table": "tpch.region"})
    text = described.content[0].text
    assert text.splitlines()[0] == "spark_catalog.tpch.region (EXTERNAL parquet)"
    assert "  r_regionkey bigint" in text
    assert not text.lstrip().startswith("{")
    listed = (await alice.call_tool("list_tables", {"namespace": "tpch"})).content[0].text
    assert "tpch.nation (external)" in listed
    assert "1 more not shown: your policy does not let you read them" in listed
