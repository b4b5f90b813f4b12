import Footer from './Footer.jsx';

/** The page frame: a header with the controls, the main content and the footer. */
export default function Layout({ controls, children, inert = false }) {
  return (
    <div className="app" inert={inert}>
      <a className="skip-link" href="#main">
        Skip to the movies
      </a>
      <header className="site-header">
        <div className="site-header-inner">
          <h1 className="brand">
            <span className="brand-mark" aria-hidden="true">m</span>
            movierec
          </h1>
          {controls}
        </div>
      </header>
      <main id="main" className="site-main">
        {children}
      </main>
      <Footer />
    </div>
  );
}
