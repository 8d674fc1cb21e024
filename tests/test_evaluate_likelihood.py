"""ELBO and IWAE estimates: k = 1 is the ELBO, larger k is tighter, chunking changes nothing."""

from __future__ import annotations

import pytest
import torch
from test_evaluate_standins import TinyLinearVAE, exact_linear_gaussian_log_likelihood

from lidcvae.evaluate.likelihood import elbo_terms, iwae_log_likelihood, nested_iwae_log_likelihoods, single_sample_elbo


@pytest.fixture
def model_and_inputs():
    model = TinyLinearVAE((1, 3, 3), latent_size=2).eval()
    return model, torch.rand(6, 1, 3, 3, generator=torch.Generator().manual_seed(1))


def test_iwae_with_one_sample_equals_the_single_sample_elbo_for_the_same_noise(model_and_inputs):
    model, x = model_and_inputs
    noise = torch.randn(1, len(x), 2, generator=torch.Generator().manual_seed(2))
    iwae = iwae_log_likelihood(model, x, 1, 1, noise=noise)
    torch.testing.assert_close(iwae, single_sample_elbo(model, x, noise[0]))


@pytest.mark.parametrize("chunk_size", [1, 5, 32])
def test_iwae_estimate_does_not_depend_on_the_chunk_size(model_and_inputs, chunk_size):
    model, x = model_and_inputs
    noise = torch.randn(32, len(x), 2, generator=torch.Generator().manual_seed(3))
    reference = iwae_log_likelihood(model, x, 32, chunk_size=32, noise=noise)
    torch.testing.assert_close(iwae_log_likelihood(model, x, 32, chunk_size=chunk_size, noise=noise), reference)


def test_iwae_with_more_samples_is_not_below_the_elbo_on_average(model_and_inputs):
    model, x = model_and_inputs
    elbo, iwae = [], []
    for seed in range(20):
        generator = torch.Generator().manual_seed(seed)
        elbo.append(elbo_terms(model, x, torch.randn(len(x), 2, generator=generator)).elbo.mean())
        iwae.append(iwae_log_likelihood(model, x, samples=32, chunk_size=8, generator=generator).mean())
    assert torch.stack(iwae).mean() >= torch.stack(elbo).mean()


def test_elbo_and_iwae_stay_below_the_exact_log_likelihood_and_iwae_is_closer(model_and_inputs):
    model, x = model_and_inputs
    exact = exact_linear_gaussian_log_likelihood(model, x).mean()
    generator = torch.Generator().manual_seed(0)
    elbo = torch.stack([elbo_terms(model, x).elbo.mean() for _ in range(50)]).mean()
    iwae = torch.stack([iwae_log_likelihood(model, x, 32, 16, generator).mean() for _ in range(10)]).mean()
    assert elbo < iwae <= exact + 0.05
    assert exact - iwae < exact - elbo


def test_elbo_terms_are_per_sample_and_kl_is_non_negative(model_and_inputs):
    model, x = model_and_inputs
    terms = elbo_terms(model, x)
    assert terms.elbo.shape == terms.kl.shape == (len(x),)
    assert (terms.kl >= 0).all()
    torch.testing.assert_close(terms.elbo, terms.log_likelihood - terms.kl)


def test_nested_estimates_are_plain_iwae_on_the_first_k_of_the_same_draws(model_and_inputs):
    model, x = model_and_inputs
    generator = torch.Generator().manual_seed(5)  # drawn in chunks of 16, 16, 8, as the function draws
    noise = torch.cat([torch.randn(n, len(x), 2, generator=generator) for n in (16, 16, 8)])
    nested = nested_iwae_log_likelihoods(model, x, [40, 1, 20], chunk_size=16, generator=torch.Generator().manual_seed(5))
    assert list(nested) == [40, 1, 20]
    torch.testing.assert_close(nested[1], single_sample_elbo(model, x, noise[0]))
    torch.testing.assert_close(nested[20], iwae_log_likelihood(model, x, 20, 16, noise=noise[:20]))  # across a chunk edge
    torch.testing.assert_close(nested[40], iwae_log_likelihood(model, x, samples=40, chunk_size=16,
                                                               generator=torch.Generator().manual_seed(5)))


def test_nested_estimate_rises_with_k_towards_the_exact_log_likelihood(model_and_inputs):
    model, x = model_and_inputs
    exact = exact_linear_gaussian_log_likelihood(model, x).mean()
    runs = [nested_iwae_log_likelihoods(model, x, [1, 10, 100], chunk_size=50, generator=torch.Generator().manual_seed(s))
            for s in range(20)]
    mean = {k: torch.stack([run[k].mean() for run in runs]).mean() for k in (1, 10, 100)}
    assert mean[1] < mean[10] < mean[100] < exact + 0.01
    assert exact - mean[100] < 0.5 * (exact - mean[1])  # k = 100 closes most of the ELBO's gap


def test_nested_estimates_reject_a_zero_k(model_and_inputs):
    model, x = model_and_inputs
    with pytest.raises(ValueError, match="positive"):
        nested_iwae_log_likelihoods(model, x, [0, 10], chunk_size=10)
