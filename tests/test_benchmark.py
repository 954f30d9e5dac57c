"""search/benchmark.py runs end to end on a tiny network and ends with a JSON line a program can read back."""
import json

import benchmark


def test_benchmark_main_prints_a_sane_json_last_line(capsys):
    result = benchmark.main([
        "--DEVICE=cpu", "--INIT_CHANNELS=4", "--LAYERS=3", "--BATCH_SIZE=8", "--IMAGE_SIZE=16", "--N_IMAGES=48",
        "--WARMUP=1", "--ROUNDS=2", "--CHEAP_CALLS=2", "--NAIVE_ROUNDS=1", "--TRIAL_EPOCHS=2",
        "--AMP=bf16",  # exercises the autocast path (the CUDA default) on the CPU
    ])
    out = capsys.readouterr().out.strip().splitlines()
    last = json.loads(out[-1])
    assert last == json.loads(json.dumps(result))

    for key in ("bound_img_s", "trial_img_s", "ratio", "loss_share", "data_share", "nce_ms", "naive_nce_ms", "device"):
        assert key in last, key
    assert last["device"] == "cpu" and last["preset"] == "cpu" and last["amp"] == "bf16"
    assert (last["batch_size"], last["init_channels"], last["layers"], last["n_images"]) == (8, 4, 3, 48)
    assert last["negatives"] == 2 * (8 - 1)
    for key in ("bound_img_s", "trial_img_s", "nce_ms", "naive_nce_ms", "loss_share", "data_share"):
        assert last[key] > 0, key
    assert abs(last["ratio"] - last["trial_img_s"] / last["bound_img_s"]) < 0.01  # ratio = trial / bound
    assert last["loss_share"] < 1 and last["data_share"] < 1  # parts of a step cost less than the step
    assert last["naive_loss_diff"] < 1e-3  # the per-sample loop and BankNCE agree
    # COMPARE_LAYOUT adds a bound-only row in the other memory layout
    assert [(r["channels_last"], "trial_ms" in r) for r in last["rows"]] == [(True, True), (False, False)]
    # TRIAL_EPOCHS times real epochs and projects a whole trial
    (trial,) = last["real_trials"]
    assert len(trial["epoch_s"]) == 2 and trial["projected_trial_s"] > trial["fill_bank_s"]
    assert set(last["targets_met"]) == {"ratio", "loss_share", "data_share", "naive_speedup"}
