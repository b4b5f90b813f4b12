import { useSyncExternalStore } from 'react';
import { getServedModel, subscribeServedModel } from '../services/api.js';

/**
 * What the visitor is served, in words: the model version of the latest recommendation answer
 * and, while an experiment runs, the experiment and the visitor's arm.
 */
function ServedModel() {
  const served = useSyncExternalStore(subscribeServedModel, getServedModel);
  const inExperiment = Boolean(served?.experiment && served.arm);
  return (
    <p data-testid="served-model">
      Model version <strong data-testid="model-version">{served?.modelVersion ?? '…'}</strong>
      {inExperiment && (
        <span data-testid="experiment-arm">
          {' · '}experiment <strong>{served.experiment}</strong>
          {' · '}you are in the <strong>{served.arm}</strong> arm
        </span>
      )}
    </p>
  );
}

export default function Footer() {
  return (
    <footer className="site-footer">
      <ServedModel />
      <p className="site-footer-credits">
        Ratings from MovieLens (GroupLens Research). Posters from TMDB: this product uses the TMDB
        API but is not endorsed or certified by TMDB.
      </p>
    </footer>
  );
}
