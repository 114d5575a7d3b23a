import json
import logging

from jobline.observe import logs


def test_json_lines_carry_service_and_job_id(capsys):
    logs.setup("worker", "INFO", "json")
    logs.for_job(logging.getLogger("jobline.test"), "job-42", attempt=2).info("ran")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["message"] == "ran"
    assert record["service"] == "worker"
    assert record["job_id"] == "job-42"
    assert record["attempt"] == 2
    assert record["level"] == "INFO"
