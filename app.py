"""AutoFT Explorer: `streamlit run app.py`. The navigation; each view is one thin file in pages/, drawn
with the shared pieces in ui/ (layout, sidebar settings, pickers, run panel, charts, exports)."""
from __future__ import annotations

import streamlit as st

from ui.layout import PAGES

st.set_page_config(page_title="AutoFT Explorer", page_icon=":material/tune:", layout="wide")
st.navigation([st.Page(path, title=title, icon=icon, default=i == 0)
               for i, (path, title, icon) in enumerate(PAGES)]).run()
