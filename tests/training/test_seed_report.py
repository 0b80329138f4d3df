from training.studies.seed_report import markdown


def _run(seed, validation, test_right):
    return {
        "seed": seed,
        "validation_accuracy": validation,
        "kept_epoch": 9,
        "test": {
            "accuracy": test_right / 160,
            "recall": {"EOSINOPHIL": 1.0, "MONOCYTE": test_right / 155},
            "per_original": {
                "BloodImage_00001.jpg": [5, 5],
                "BloodImage_00110.jpg": [test_right - 5, 155],
            },
        },
        "test_simple": {
            "accuracy": 0.5,
            "per_original": {"BloodImage_00001.jpg": [1, 1], "BloodImage_00110.jpg": [0, 1]},
        },
    }


def test_seed_table_names_refits_without_validation_and_the_failing_originals():
    runs = [_run(1, 0.767, 155), _run(2, None, 80)]
    report = {
        "runs": runs,
        "original_class": {
            "BloodImage_00001.jpg": "EOSINOPHIL",
            "BloodImage_00110.jpg": "MONOCYTE",
        },
        "summary": {
            split: {"mean": 0.7, "min": 0.5, "max": 0.9} for split in ("test", "test_simple")
        },
    }
    lines = markdown(report).splitlines()
    assert lines[2].startswith("| 1 | 0.7670 | 9 | 0.9688 | 0.5000 | 1.000 | 1.000 |")
    assert lines[3].startswith("| 2 | none held out | 9 |")
    assert "nan" not in markdown(report)
    # Only the original below 0.9 of its TEST copies in some seed is listed, with every seed.
    failing = [line for line in lines if line.startswith("| BloodImage")]
    assert failing == ["| BloodImage_00110 | MONOCYTE | 150/155 | 75/155 | 0/1 | 0/1 |"]
