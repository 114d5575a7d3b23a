from jobline.pg import queries


def test_named_blocks_are_split_with_their_sql():
    parsed = queries.parse("-- name: a\n-- why\nSELECT 1\n\n-- name: b\nSELECT :x\n")
    assert parsed == {"a": "-- why\nSELECT 1", "b": "SELECT :x"}


def test_every_statement_in_queries_sql_loads():
    for name in ("claim_outbox", "lock_job", "save_job", "insert_job", "renew_lease"):
        assert queries.q(name).text.strip()


def test_json_parameters_are_typed_for_serialisation():
    statement = queries.q("insert_job")
    assert statement._bindparams["payload"].type.__class__.__name__ == "JSONB"
    assert statement._bindparams["tenant_id"].type.__class__.__name__ == "NullType"
