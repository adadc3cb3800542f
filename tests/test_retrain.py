"""Retraining the same configs under other training seeds (`run --repeat K`): the seeds, the stored setting, and
the noise numbers computed from two such studies."""


from anynet_search.study.plan import StudySettings, train_seed


def _settings(**kw):
    base = dict(space={}, space_source="x", space_hash="h", sampler="random", seed=5, n_trials=10, dataset="digits",
                train={})
    return StudySettings(**{**base, **kw})


def test_the_first_training_keeps_seed_plus_slot_and_a_repeat_reuses_no_seed():
    assert [train_seed(5, s) for s in range(4)] == [5, 6, 7, 8]
    first = {train_seed(seed, s) for seed in range(3) for s in range(1000)}
    again = [train_seed(0, s, 1) for s in range(1000)] + [train_seed(0, s, 2) for s in range(1000)]
    assert len(set(again)) == len(again) and not first & set(again)
    assert train_seed(0, 3, 1) == train_seed(0, 3, 1) and 0 <= train_seed(7, 3, 9) < 2**31
    assert _settings(repeat=2).train_seed(3) == train_seed(5, 3, 2)


def test_repeat_is_stored_only_when_set_and_older_settings_read_as_the_first_training():
    first = _settings().to_dict()
    assert "repeat" not in first  # readable by versions that do not know the field
    assert StudySettings.from_dict(first).repeat == 0
    again = _settings(repeat=3).to_dict()
    assert again["repeat"] == 3 and StudySettings.from_dict(again).repeat == 3
