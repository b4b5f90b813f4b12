import { useSyncExternalStore } from 'react';
import { getModelVersion, subscribeModelVersion } from '../services/api.js';

export default function Footer() {
  const version = useSyncExternalStore(subscribeModelVersion, getModelVersion);
  return (
    <footer className="site-footer">
      <p>
        Model version <strong data-testid="model-version">{version ?? '…'}</strong>
      </p>
      <p className="site-footer-credits">
        Ratings from MovieLens (GroupLens Research). Posters from TMDB: this product uses the TMDB
        API but is not endorsed or certified by TMDB.
      </p>
    </footer>
  );
}
