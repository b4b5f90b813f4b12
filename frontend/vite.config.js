import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// `npm run dev` serves the page on :5173 and forwards API calls to a local `bentoml serve`
// (port 3000 unless MOVIEREC_API_URL says otherwise).
const API_PATHS = '^/(recommend|recommend_for_liked|similar|popular|movies|explain|feedback)$';
const API_URL = process.env.MOVIEREC_API_URL ?? 'http://127.0.0.1:3000';

export default defineConfig({
  plugins: [react()],
  // Relative asset URLs: the built page works wherever the Bento is mounted.
  base: './',
  server: {
    proxy: { [API_PATHS]: API_URL },
  },
  test: {
    environment: 'jsdom',
    setupFiles: ['./src/test/setup.js'],
    // Generous: on a loaded two-core machine a user-event test can take several seconds.
    testTimeout: 20_000,
  },
});
