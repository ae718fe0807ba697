"""The comparison table of `ph2_tf.experiments.report`."""

from ph2_tf.experiments import report


def test_markdown_names_the_configurations_that_have_no_record_yet(tmp_path):
    path = tmp_path / "comparison.md"
    report.write_markdown([], path, "setting", 50, without_records=["a-e15", "b-e50"])
    assert "No record yet (the run is not finished): a-e15, b-e50." in path.read_text()
    report.write_markdown([], path, "setting", 50)
    assert "No record yet" not in path.read_text()
